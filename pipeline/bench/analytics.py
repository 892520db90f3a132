"""``wrp bench analytics``: sink ingest rate into the embedded engine, and named-query latency on a
large table.

1. Ingest: ``--rows`` finished-request envelopes (signals, safety, decision, a 1 kB answer, one
   endpoint attempt) go through the analytics stage's own ``process`` in batches of
   ``WRP_SINK_BATCH_ROWS``, exactly as the running sink inserts them (existence check, attempts,
   requests, the rollup's materialized view). No broker: this is the engine side of the sink.
2. Scale: the table is grown to ``--total`` rows with ``INSERT ... SELECT`` copies under new
   request ids and times spread over the last 24 h (the materialized view fills the rollup too).
3. Queries: each named query over the last 24 h, median and max of ``--repeat`` runs.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import shutil
import statistics
import time

from pipeline.bus.catalog import RESPONSES
from pipeline.bus.stage import Inbound
from pipeline.envelope import (
    Attempt,
    ChatRequest,
    Decision,
    Envelope,
    Outcome,
    RequestSection,
    Result,
    Safety,
    Signals,
)
from pipeline.settings import Settings
from pipeline.stages.analytics import AnalyticsStage

TENANTS = ("web", "mobile", "internal", "agents")
ROUTES = (
    ("code", "wrp-coder-32b", "large"),
    ("reasoning", "wrp-small-8b", "small"),
    ("casual", "wrp-large-70b", "large"),
    ("general", "wrp-small-8b", "small"),
)
TIMED_QUERIES = ("summary", "decisions", "models", "latency", "cost", "cache", "traffic", "pools")


def served_envelope(i: int, rng: random.Random, at: float) -> Envelope:
    decision, model, pool = ROUTES[i % len(ROUTES)]
    latency = rng.lognormvariate(6, 0.6)
    prompt, completion = rng.randint(20, 2000), rng.randint(10, 600)
    cost = (prompt * 0.2 + completion * 0.6) / 1e6
    signals = Signals(
        prompt_tokens=prompt,
        context_class="short",
        messages=1,
        turns=1,
        tools_present=False,
        tool_loop=False,
        images_present=False,
        audio_present=False,
        language="en",
        language_score=0.99,
        system_fingerprint=None,
        expected_output_tokens=256,
        load_shape="balanced",
        session="cold",
        domain="computer science",
        domain_score=0.9,
        complexity="medium",
        complexity_score=0.5,
        embedding="",
        encoder="bench",
    )
    attempt = Attempt(
        model=model,
        pool=pool,
        endpoint=f"http://10.0.0.{i % 8}:8000",
        status="ok",
        started_at=at,
        latency_ms=latency,
        ttft_ms=latency / 5,
    )
    outcome = Outcome(
        request_id=f"bench-{i}",
        decision=decision,
        model=model,
        pool=pool,
        endpoint=attempt.endpoint,
        status="ok",
        attempts=1,
        latency_ms=latency,
        ttft_ms=latency / 5,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        gpu_cost_usd=cost / 3,
        energy_j=latency / 10,
        dispatched_at=at,
        completed_at=at + latency / 1000,
        attempt_log=[attempt],
        baseline_model="wrp-large-70b",
        baseline_cost_usd=cost * 3,
    )
    answer = {"choices": [{"message": {"role": "assistant", "content": "x" * 1000}}]}
    return Envelope(
        request=RequestSection(
            request_id=f"bench-{i}",
            tenant=TENANTS[i % len(TENANTS)],
            created_at=at,
            body=ChatRequest(messages=[{"role": "user", "content": f"question {i} " * 20}]),
        ),
        signals=signals,
        safety=Safety(action="allow", jailbreak_score=rng.random() / 10),
        decision=Decision(
            decision=decision,
            candidates=[model, "wrp-large-70b"],
            model=model,
            pool=pool,
            strategy="static",
        ),
        result=Result(status="ok", response=answer, stage="dispatch", completed_at=at),
        outcome=outcome,
    )


def run_analytics_bench(settings: Settings, rows: int, total: int, repeat: int) -> dict:
    state = settings.state_dir / "bench-analytics"
    shutil.rmtree(state, ignore_errors=True)
    settings = settings.model_copy(update={"state_dir": state, "clickhouse": ""})
    stage = AnalyticsStage(settings)
    asyncio.run(stage.start())
    try:
        return _measure(stage, rows, total, repeat)
    finally:
        asyncio.run(stage.stop())
        shutil.rmtree(state, ignore_errors=True)


def _measure(stage: AnalyticsStage, rows: int, total: int, repeat: int) -> dict:
    rng = random.Random(7)
    now = time.time()
    batch_rows = stage.settings.sink_batch_rows
    print(
        f"setup: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"chdb embedded in {stage.settings.state_dir}; {rows} envelopes in batches of "
        f"{batch_rows}, then grown to {total} rows; queries over 24 h, {repeat} runs each"
    )
    build_s = insert_s = 0.0
    for start in range(0, rows, batch_rows):
        built = time.perf_counter()
        batch = [
            Inbound(RESPONSES, 0, i, b"", served_envelope(i, rng, now - rng.uniform(0, 86400)))
            for i in range(start, min(rows, start + batch_rows))
        ]
        began = time.perf_counter()
        build_s += began - built
        asyncio.run(stage.process(batch))
        insert_s += time.perf_counter() - began
        print(f"  ingested {start + len(batch)}/{rows} ({(start + len(batch)) / insert_s:.0f}/s)")
    client = stage.store.client
    copies = 0
    while (count := client.query("SELECT count() FROM requests").result_rows[0][0]) < total:
        copies += 1
        take = min(count, total - count)
        client.command(
            f"INSERT INTO requests SELECT * REPLACE (concat(request_id, '-c{copies}') AS "
            f"request_id, created_at - toIntervalSecond(rand() % 86400) AS created_at) "
            f"FROM requests LIMIT {take}"
        )
        print(f"  grown to {count + take} rows")
    client.command("OPTIMIZE TABLE requests_minutely FINAL")
    rolled = client.query("SELECT count(), sum(requests) FROM requests_minutely").result_rows[0]
    latencies: dict[str, dict[str, float]] = {}
    for name in TIMED_QUERIES:
        runs = []
        for _ in range(repeat):
            began = time.perf_counter()
            stage.store.query(name, {"since": "24h"})
            runs.append((time.perf_counter() - began) * 1000)
        median, worst = statistics.median(runs), max(runs)
        latencies[name] = {"median_ms": round(median, 1), "max_ms": round(worst, 1)}
        print(f"  {name:<10} median {median:>8.1f} ms  max {worst:>8.1f} ms")
    return {
        "ingest": {
            "rows": rows,
            "batch_rows": batch_rows,
            "rows_per_s": round(rows / insert_s),
            "envelope_build_s": round(build_s, 1),
        },
        "table_rows": total,
        "rollup_rows": rolled[0],
        "rollup_requests": rolled[1],
        "query_ms": latencies,
    }
