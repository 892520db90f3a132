"""``wrp bench gateway``: what the OpenAI-compatible gateway adds to a round trip.

Starts the embedded stack (simulated pools answering at once) with its gateway, then, at each
concurrency, runs the same number of requests in a closed loop two ways: directly (publish to
``wrp.requests``, await ``wrp.responses``, as the gateway does internally) and through
``POST /v1/chat/completions``. Overhead = gateway round trip - direct round trip, per
percentile. Prompts differ per request and per path; cache hits are counted and reported.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import time
from collections.abc import Awaitable, Callable

import httpx
import numpy as np

from pipeline.bench.overhead import distinct_messages
from pipeline.bus.catalog import REQUESTS, RESPONSES
from pipeline.bus.codec import encode
from pipeline.client import ResponseCollector, start_producer
from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.settings import Settings
from pipeline.stack import Stack


async def _closed_loop(
    concurrency: int, count: int, call: Callable[[int], Awaitable[bool]]
) -> tuple[list[float], int]:
    """Round-trip seconds of ``count`` calls, ``concurrency`` at a time; and the cache hits."""
    latencies: list[float] = []
    hits = 0
    next_index = iter(range(count))

    async def worker() -> None:
        nonlocal hits
        for i in next_index:
            started = time.perf_counter()
            hits += await call(i)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, hits


async def _measure(
    settings: Settings, gateway_url: str, api_key: str | None, concurrency: int, count: int
) -> dict:
    producer = await start_producer(settings.broker)
    collector = ResponseCollector(settings.broker, RESPONSES, retain=False)
    await collector.start()
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    http = httpx.AsyncClient(base_url=gateway_url, timeout=120, limits=limits, headers=headers)

    async def direct(i: int) -> bool:
        section = RequestSection(body=ChatRequest(messages=distinct_messages("direct", i)))
        envelope = Envelope(request=section)
        future = collector.expect(section.request_id)
        await producer.send_and_wait(REQUESTS, encode(envelope), key=envelope.key.encode())
        answer = await collector.response(future, section.request_id, 120)
        return bool(answer and answer.decision and answer.decision.cache_hit)

    async def gateway(i: int) -> bool:
        body = {"model": "auto", "messages": distinct_messages("gateway", i)}
        reply = await http.post("/v1/chat/completions", json=body)
        reply.raise_for_status()
        return reply.headers.get("x-wrp-cache-hit") == "true"

    try:
        results = {}
        for name, call in (("direct", direct), ("gateway", gateway)):
            latencies, hits = await _closed_loop(concurrency, count, call)
            ms = np.array(latencies) * 1000
            results[name] = {
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1),
                "cache_hits": hits,
            }
        results["overhead_ms"] = {
            q: round(results["gateway"][q] - results["direct"][q], 1) for q in ("p50_ms", "p99_ms")
        }
        return results
    finally:
        await http.aclose()
        await collector.stop()
        await producer.stop()


def run_gateway_bench(settings: Settings, count: int) -> dict:
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench-gateway"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack = Stack(
        settings, broker_port=int(settings.broker.rsplit(":", 1)[1]), simulate_latency=False
    )
    report: dict = {
        "setup": {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "stack": "embedded: Tansu, one process per stage, simulated pools answering at once",
            "requests": f"{count} per path and concurrency, closed loop, distinct short prompts",
        }
    }
    try:
        stack.start()
        asyncio.run(_measure(settings, stack.gateway_url, stack.api_key, 10, 20))  # warm-up
        for concurrency in (10, 100):
            print(f"concurrency {concurrency} ...", flush=True)
            report[f"concurrency_{concurrency}"] = asyncio.run(
                _measure(settings, stack.gateway_url, stack.api_key, concurrency, count)
            )
    finally:
        stack.stop()
    return report
