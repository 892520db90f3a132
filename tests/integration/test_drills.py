"""Fault drills on the embedded stack: each asserts nothing is lost (every request answered) and
nothing is double-counted (the minutely rollup, which a replay reaching ClickHouse twice would
inflate, counts each request once)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import DLQ, POOL_STATE, REQUESTS
from pipeline.bus.codec import decode
from pipeline.client import replay, start_producer
from pipeline.envelope import Envelope, PoolState
from pipeline.pool.scrape import parse_vllm_metrics
from pipeline.stack import SEPARATE_STAGES
from tests.integration.conftest import run
from tests.integration.faults import SWITCHES
from tests.integration.helpers import eventually, read_topic, request

pytestmark = pytest.mark.integration


def rolled_up(stack, tenant: str) -> int:
    result = query_analytics(stack.settings, "summary", {"tenant": tenant, "since": "1h"})
    return dict(zip(result["columns"], result["rows"][0], strict=True))["requests"] or 0


def counted_once(stack, tenant: str, expected: int) -> None:
    try:
        eventually(lambda: rolled_up(stack, tenant) >= expected, what=f"{tenant} in analytics")
    except AssertionError as exc:
        counted = rolled_up(stack, tenant)
        tail = stack.log_tail("analytics", lines=40)
        raise AssertionError(
            f"{exc}: {counted} of {expected} counted; analytics:\n{tail}"
        ) from None
    assert rolled_up(stack, tenant) == expected


def stage_metric(stack, stage: str, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.settings.stage_port(stage)}/metrics").text
    return parse_vllm_metrics(text).get(name, 0.0)  # summed over labels


@pytest.mark.parametrize("stage", SEPARATE_STAGES)
def test_kill_9_mid_batch_then_restart_loses_nothing_and_counts_once(stack, stage):
    tenant = f"kill-{stage}"
    requests = [request(f"drill {stage} {i}: explain recursion", tenant=tenant) for i in range(40)]

    async def scenario() -> dict[str, Envelope]:
        answers = asyncio.create_task(
            replay(stack.settings.broker, requests, rate=20, timeout_s=240)
        )
        await asyncio.sleep(1.0)
        stack.stop_process(stage, sig=signal.SIGKILL)
        await asyncio.sleep(0.5)
        stack.spawn(stage, ["stage", stage])
        return await answers

    answers = run(scenario())
    stack.wait_healthy((stage,), simulators=False)
    assert set(answers) == {r.request_id for r in requests}
    assert all(env.result.status == "ok" for env in answers.values())
    counted_once(stack, tenant, len(requests))


def test_every_endpoint_of_a_pool_down_gives_clear_errors_and_the_circuit_opens_and_closes(
    stack,
):
    SWITCHES.update({"switch-flaky-a": "500", "switch-flaky-b": "500"})
    down = [
        run(
            replay(
                stack.settings.broker,
                [request(f"flaky {i}", model="wrp-fault-flaky")],
                rate=0,
                timeout_s=60,
            )
        )
        for i in range(3)
    ]
    errors = [next(iter(a.values())).result.error for a in down]
    assert [e.type for e in errors[:2]] == ["pool_error", "pool_error"]
    assert errors[2].type == "pool_unavailable" and "open circuit" in errors[2].message

    def circuits(state: str) -> set[str] | None:
        latest: dict[str, PoolState] = {}
        for record in run(read_topic(stack.settings.broker, POOL_STATE)):
            row = decode(record.value, PoolState)
            if row.pool == "flaky":
                latest[row.endpoint] = row
        ends = {e for e, row in latest.items() if row.circuit == state}
        return ends if len(ends) == 2 else None

    eventually(lambda: circuits("open"), what="both circuits open on wrp.pool-state")

    SWITCHES.update({"switch-flaky-a": "ok", "switch-flaky-b": "ok"})

    def answered() -> bool:
        (one,) = run(
            replay(
                stack.settings.broker,
                [request("flaky back", model="wrp-fault-flaky")],
                rate=0,
                timeout_s=60,
            )
        ).values()
        return one.result.status == "ok"

    eventually(answered, what="an answer once the endpoints are back (half-open probe)")
    back = [request(f"flaky back {i}", model="wrp-fault-flaky") for i in range(6)]
    answers = run(replay(stack.settings.broker, back, rate=0, timeout_s=60))
    assert all(a.result.status == "ok" for a in answers.values())
    eventually(lambda: circuits("closed"), what="both circuits closed again")


def test_poison_at_a_steady_rate_fills_the_dlq_and_good_traffic_flows(stack):
    tenant = "poison"
    good = [
        request(f"steady traffic {i}: what is a Python list?", tenant=tenant) for i in range(40)
    ]
    before = len(run(read_topic(stack.settings.broker, DLQ)))

    async def scenario() -> dict[str, Envelope]:
        producer = await start_producer(stack.settings.broker)
        answers = asyncio.create_task(replay(stack.settings.broker, good, rate=20, timeout_s=120))
        try:
            for i in range(20):  # ten per second beside twenty good ones
                poison = b"{not json" if i % 2 else json.dumps({"request": {"body": 1}}).encode()
                await producer.send_and_wait(REQUESTS, poison, key=f"poison-{i}".encode())
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()
        return await answers

    answers = run(scenario())
    assert len(answers) == len(good)
    assert [a.result.status for a in answers.values()] == ["ok"] * len(good)
    eventually(
        lambda: len(run(read_topic(stack.settings.broker, DLQ))) >= before + 20,
        what="twenty dead letters",
    )
    assert len(run(read_topic(stack.settings.broker, DLQ))) == before + 20
    counted_once(stack, tenant, len(good))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_burst_far_above_the_sustainable_rate_builds_lag_that_drains_in_bounded_memory(stack):
    tenant = "burst"
    burst = [request(f"burst {i}: summarise the water cycle", tenant=tenant) for i in range(600)]
    peak_lag = 0.0
    peak_rss: dict[str, int] = {}

    async def scenario() -> dict[str, Envelope]:
        nonlocal peak_lag
        # published as fast as the producer goes: hundreds per second, ten times and more what
        # two cores sustain
        collector = asyncio.create_task(
            replay(stack.settings.broker, burst, rate=0, timeout_s=300, label="burst")
        )
        while not collector.done():
            peak_lag = max(peak_lag, stage_metric(stack, "signals", "wrp_stage_consumer_lag"))
            for name, proc in stack.processes.items():
                peak_rss[name] = max(peak_rss.get(name, 0), rss_bytes(proc.pid))
            await asyncio.sleep(0.2)
        return await collector

    answers = run(scenario())
    assert len(answers) == len(burst) and all(a.result.status == "ok" for a in answers.values())
    assert peak_lag > 0  # the burst queued in Kafka, not in the stages
    eventually(
        lambda: stage_metric(stack, "signals", "wrp_stage_consumer_lag") == 0, what="lag drained"
    )
    # each stage holds at most a batch in memory: no stage grows past its model + a margin
    assert max(peak_rss.values()) < 1.5 * 1024**3, peak_rss
    counted_once(stack, tenant, len(burst))
