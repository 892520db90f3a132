"""Independent scaling on the embedded stack: more instances of one stage join its consumer group,
the partitions rebalance across them, and every request is answered and counted exactly once
(a redelivered record's repeat answer is dropped by request id). Throughput per instance count
is a benchmark (`make bench`), not a test."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from pipeline.client import replay
from pipeline.envelope import Envelope
from pipeline.pool.scrape import parse_vllm_metrics
from tests.integration.conftest import free_port, run
from tests.integration.helpers import eventually, request
from tests.integration.test_drills import counted_once

pytestmark = pytest.mark.integration


def health(port: int) -> dict:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
    except httpx.HTTPError:
        return {}


def processed(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return parse_vllm_metrics(text).get("wrp_stage_processed", 0.0)


def add_instance(stack, stage: str, name: str) -> int:
    port = free_port()
    stack.spawn(name, ["stage", stage, "--port", str(port)])
    eventually(lambda: health(port).get("state") == "running", 120, what=f"{name} running")
    return port


def test_signals_scales_from_one_to_three_instances_and_answers_each_request_once(stack):
    tenant = "scale-signals"
    ports = {"signals": stack.settings.stage_port("signals")}
    sent = 0
    try:
        for count in (1, 2, 3):
            if count > 1:
                ports[f"signals-{count}"] = add_instance(stack, "signals", f"signals-{count}")
            # the group rebalanced: every instance owns at least one of the 4 partitions
            eventually(
                lambda: (
                    all(health(p).get("partitions", 0) >= 1 for p in ports.values())
                    and sum(health(p)["partitions"] for p in ports.values()) == 4
                ),
                what=f"4 partitions over {count} instance(s)",
            )
            before = {name: processed(port) for name, port in ports.items()}
            batch = [
                request(f"scaling {count}.{i}: define a tuple", tenant=tenant) for i in range(40)
            ]
            answers = run(replay(stack.settings.broker, batch, rate=40, timeout_s=120))
            sent += len(batch)
            assert set(answers) == {r.request_id for r in batch}
            assert all(a.result.status == "ok" for a in answers.values())
            moved = {name: processed(port) - before[name] for name, port in ports.items()}
            assert all(n > 0 for n in moved.values()), moved  # every instance did work
        counted_once(stack, tenant, sent)
    finally:
        for name in ("signals-2", "signals-3"):
            stack.stop_process(name)


def test_dispatch_scales_out_and_in_while_requests_are_in_flight(stack):
    tenant = "scale-dispatch"
    slow = [request(f"in flight {i}", model="wrp-fault-slow", tenant=tenant) for i in range(80)]
    worked = 0.0

    async def scenario() -> dict[str, Envelope]:
        nonlocal worked
        answers = asyncio.create_task(replay(stack.settings.broker, slow, rate=10, timeout_s=180))
        await asyncio.sleep(0.5)  # calls to the slow pool are in flight
        port = await asyncio.to_thread(add_instance, stack, "dispatch", "dispatch-2")
        # scale out: the new instance takes partitions and serves requests of the running replay
        await asyncio.to_thread(
            eventually, lambda: processed(port) > 0, 60, "dispatch-2 serving requests"
        )
        worked = processed(port)
        # scale in mid-flight: SIGTERM drains the instance's in-flight calls and commits
        await asyncio.to_thread(stack.stop_process, "dispatch-2", signal.SIGTERM)
        return await answers

    try:
        answers = run(scenario())
    finally:
        stack.stop_process("dispatch-2")
    assert set(answers) == {r.request_id for r in slow}
    assert all(a.result.status == "ok" for a in answers.values())
    assert worked > 0
    counted_once(stack, tenant, len(slow))
