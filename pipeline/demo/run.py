"""``wrp demo``: the whole pipeline on the embedded stack, start to finish, with a report.

Feedback in the demo is simulated: each answer is judged good with a probability that depends on
the model (a stand-in for users; see ``SIMULATED_QUALITY``), so the learner has something to learn.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import httpx

from pipeline.analytics.access import query_analytics
from pipeline.analytics.render import render_table
from pipeline.analytics.report import build_report
from pipeline.bus.catalog import POOL_STATE, REQUESTS, ROUTER_STATE
from pipeline.bus.table import CompactedTable
from pipeline.client import load_workload, replay, send_feedback, start_producer
from pipeline.envelope import Envelope, Feedback, PoolState, RouterState
from pipeline.policy import Policy
from pipeline.settings import Settings
from pipeline.stack import Stack

#: Probability that a simulated user rates an answer of this model as good.
SIMULATED_QUALITY = {
    "wrp-small-8b": 0.55,
    "wrp-large-70b": 0.85,
    "wrp-coder-32b": 0.9,
    "wrp-long-128k": 0.8,
}


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def send_simulated_feedback(bootstrap: str, answers: dict[str, Envelope]) -> int:
    rng = random.Random(42)
    producer = await start_producer(bootstrap)
    sent = 0
    try:
        for rid, env in sorted(answers.items()):
            if env.result is None or env.result.status != "ok" or env.decision is None:
                continue
            good = rng.random() < SIMULATED_QUALITY.get(env.decision.model, 0.5)
            await send_feedback(
                producer,
                Feedback(request_id=rid, score=1.0 if good else 0.0, source="demo-simulated-user"),
            )
            sent += 1
        # two messages no stage can use, to show the dead-letter path
        await producer.send_and_wait(REQUESTS, b"{not json", key=b"demo-bad-json")
        await producer.send_and_wait(
            REQUESTS,
            b'{"request": {"request_id": "demo-bad-schema", "body": {"messages": []}}}',
            key=b"demo-bad-schema",
        )
    finally:
        await producer.stop()
    return sent


async def read_pool_state(bootstrap: str) -> dict[str, PoolState]:
    """What dispatch last published per endpoint (it publishes every second)."""
    table = CompactedTable(bootstrap, POOL_STATE, PoolState)
    await table.start()
    try:
        await asyncio.sleep(1.5)
        return dict(table.values)
    finally:
        await table.stop()


async def wait_for_router_state(bootstrap: str, observations: int, timeout_s: float) -> dict:
    table = CompactedTable(bootstrap, ROUTER_STATE, RouterState)
    await table.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(s.observations for s in table.values.values()) >= observations:
                break
            await asyncio.sleep(0.5)
        return dict(table.values)
    finally:
        await table.stop()


def wait_for_rows(settings: Settings, requests: int, feedback: int, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        totals = query_analytics(settings, "totals", {})
        row = dict(zip(totals["columns"], totals["rows"][0], strict=True))
        if (
            row["requests"] >= requests and row["feedback"] >= feedback
        ) or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


def run_demo(settings: Settings, workload: Path, rate: float) -> int:
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "demo"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    requests = load_workload(workload)
    step(
        "starting the embedded stack (broker, topics, simulated pools, the request path fused in "
        "one process, the learner, the analytics sink, the gateway)"
    )
    started = time.monotonic()
    try:
        stack.start()
        print(stack.describe())
        print(f"ready in {time.monotonic() - started:.1f}s")

        step(f"replaying {len(requests)} requests from {workload} at {rate:g}/s")
        answers = asyncio.run(replay(settings.broker, requests, rate, timeout_s=180))
        statuses = Counter(e.result.status if e.result else "none" for e in answers.values())
        print(f"{len(answers)}/{len(requests)} answered: {dict(statuses)}")
        print_stage_evidence(answers)

        step(f"one request through the OpenAI-compatible gateway at {stack.gateway_url}/v1")
        print_gateway_call(stack.gateway_url, stack.api_key)

        step("sending simulated user feedback (+ two malformed messages for the DLQ)")
        sent = asyncio.run(send_simulated_feedback(settings.broker, answers))
        print(f"{sent} feedback messages sent")
        # feedback on a cached answer credits no model
        credited = sum(
            1
            for env in answers.values()
            if env.result
            and env.result.status == "ok"
            and env.decision
            and not env.decision.cache_hit
        )
        state = asyncio.run(wait_for_router_state(settings.broker, credited, timeout_s=60))
        print_router_state(state, stack.policy)
        print_pool_state(asyncio.run(read_pool_state(settings.broker)), answers, stack.policy)

        step("routing analytics (ClickHouse engine via chdb, one row per request)")
        totals = wait_for_rows(settings, len(requests) + 1, sent, timeout_s=60)
        print(f"totals: {totals}")
        for name in ("summary", "decisions", "models", "pools", "cost", "safety", "dlq"):
            print(f"\n-- {name}")
            print(render_table(query_analytics(settings, name, {})))
        report = settings.state_dir / "report.html"
        report.write_text(
            build_report(lambda name, params: query_analytics(settings, name, params)),
            encoding="utf-8",
        )
        print(f"\nHTML report (charts, offline): {report.resolve()}")
        ok = len(answers) == len(requests)
    finally:
        step("stopping (every stage drains and commits)")
        stack.stop()
    print(f"demo finished in {time.monotonic() - started:.1f}s")
    return 0 if ok else 1


def print_gateway_call(gateway_url: str, api_key: str | None) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is a Kafka topic?"}]}
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    reply = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    wrp = {k: v for k, v in reply.headers.items() if k.startswith("x-wrp-")}
    print(f"POST /v1/chat/completions {json.dumps(body)}\n-> {reply.status_code} {wrp}")
    if reply.is_success:
        print(f"   {reply.json()['choices'][0]['message']['content'][:80]!r}")


def print_stage_evidence(answers: dict[str, Envelope]) -> None:
    envs = list(answers.values())
    domains = Counter(e.signals.domain for e in envs if e.signals)
    contexts = Counter(e.signals.context_class for e in envs if e.signals)
    tools = sum(1 for e in envs if e.signals and e.signals.tools_present)
    actions = Counter(e.safety.action for e in envs if e.safety)
    decisions = Counter(f"{e.decision.decision}->{e.decision.model}" for e in envs if e.decision)
    endpoints = Counter(e.outcome.endpoint for e in envs if e.outcome)
    print(f"signals : domains {dict(domains)}; context {dict(contexts)}; with tools {tools}")
    print(f"safety  : actions {dict(actions)}")
    print(f"router  : {dict(decisions)}")
    print(f"dispatch: endpoints {dict(endpoints)}")


def print_pool_state(
    states: dict[str, PoolState], answers: dict[str, Envelope], policy: Policy
) -> None:
    """Per endpoint: dispatch's published view, and the outcomes' GPU cost and energy."""
    print("dispatch: wrp.pool-state per endpoint, and the GPU share of the answers it served")
    outcomes = [e.outcome for e in answers.values() if e.outcome]
    for state in sorted(states.values(), key=lambda s: (s.pool, s.endpoint)):
        pool = policy.pool(state.pool) if state.pool in {p.name for p in policy.pools} else None
        served = [o for o in outcomes if o.endpoint == state.endpoint]
        ttft = f"{state.ttft_ms_ewma:.0f} ms" if state.ttft_ms_ewma is not None else "-"
        hardware = f"{pool.gpus_per_endpoint}x{pool.gpu}, {pool.selection.policy}" if pool else ""
        print(
            f"  {state.pool:<6} {state.endpoint:<24} {hardware:<30} requests {state.requests:<4} "
            f"errors {state.errors:<2} TTFT EWMA {ttft:<8} circuit {state.circuit:<7} "
            f"GPU ${sum(o.gpu_cost_usd for o in served):.5f} "
            f"{sum(o.energy_j for o in served):.0f} J"
        )


def print_router_state(state: dict[str, RouterState], policy: Policy) -> None:
    strength = policy.router.thompson.prior_strength
    print(
        "learner : router-state per arm: version, and the posterior mean "
        f"Beta(q*{strength:g} + successes, (1-q)*{strength:g} + failures) with q the card's "
        "default quality prior"
    )
    known = {card.name: card for card in policy.models}
    for key, arm in sorted(state.items()):
        q = known[arm.model].prior_quality(None) if arm.model in known else 0.5
        alpha, beta = q * strength + arm.successes, (1 - q) * strength + arm.failures
        print(f"  {key:<32} v{arm.version:<4} mean={alpha / (alpha + beta):.3f}")
