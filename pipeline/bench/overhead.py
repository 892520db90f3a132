"""``wrp bench pipeline``: pipeline overhead at a fixed offered rate, pools answering at once.

Starts its own embedded stack (simulators with no artificial latency) on the configured ports,
publishes short chat requests at ``rate`` for ``duration`` seconds, and reports JSON:
offered and achieved rate, overhead percentiles (publish -> dispatch start; publish -> response
minus pool time) and per-stage processing time, from the stage spans every envelope carries.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import time
from collections import defaultdict

import numpy as np

from pipeline.client import replay
from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.settings import Settings
from pipeline.stack import Stack

PROMPTS = [
    "Explain the difference between TCP and UDP.",
    "Write a Python function that checks whether a string is a palindrome.",
    "What is the integral of 1/x?",
    "Suggest three names for a bakery.",
]


def distinct_messages(tag: str, i: int) -> list[dict[str, str]]:
    """A chat prompt that differs from every other (tag, i): one of :data:`PROMPTS`, numbered."""
    return [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} ({tag} request {i})"}]


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.array(values)
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in (50, 95, 99)} | {
        "mean": round(float(arr.mean()), 2)
    }


def measure(answers: dict[str, Envelope], received_at: dict[str, float]) -> dict:
    to_dispatch, overhead = [], []
    per_stage: dict[str, list[float]] = defaultdict(list)
    for rid, env in answers.items():
        created = env.request.created_at
        spans = {s.stage: s for s in env.trail}
        for span in env.trail:
            per_stage[span.stage].append((span.end - span.start) * 1000)
        if env.outcome is None or "dispatch" not in spans:
            continue
        to_dispatch.append((env.outcome.dispatched_at - created) * 1000)
        overhead.append((received_at[rid] - created) * 1000 - env.outcome.latency_ms)
    return {
        "publish_to_dispatch_ms": percentiles(to_dispatch),
        "publish_to_response_minus_pool_ms": percentiles(overhead),
        "stage_batch_ms": {stage: percentiles(v) for stage, v in sorted(per_stage.items())},
    }


def run_pipeline_bench(settings: Settings, rate: float, duration: float) -> dict:
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack = Stack(
        settings, broker_port=int(settings.broker.rsplit(":", 1)[1]), simulate_latency=False
    )
    count = max(1, int(rate * duration))
    requests = [
        RequestSection(
            body=ChatRequest(messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
        )
        for i in range(count)
    ]
    try:
        stack.start()
        warmup = [RequestSection(body=r.body) for r in requests[:20]]
        asyncio.run(replay(settings.broker, warmup, 0, timeout_s=60, label="warm-up"))
        started = time.monotonic()
        received: dict[str, float] = {}
        answers = asyncio.run(
            replay(
                settings.broker, requests, rate, timeout_s=120, label="bench", received_at=received
            )
        )
        elapsed = time.monotonic() - started
    finally:
        stack.stop()
    return {
        "setup": {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "broker": "Tansu (embedded, memory storage), 4 partitions per topic",
            "stages": "one process each: signals, safety, router, dispatch, learner, analytics",
            "pools": "wrp sim with no artificial latency",
            "requests": f"{count} short single-turn chat prompts",
        },
        "offered_rate": rate,
        "achieved_rate": round(len(answers) / elapsed, 2),
        "answered": len(answers),
        "sent": count,
        **measure(answers, received),
    }
