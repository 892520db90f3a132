"""LiteLLM's Router in front of OpenAI-compatible endpoints: the peer of ``wrp bench envelope``.

Runs as a script in its own virtualenv (``.wrp/peers/litellm``; litellm is not a WRP dependency)
and imports nothing of WRP. It sends distinct chat requests through ``Router.acompletion`` to the
given endpoints at a steady rate, then as fast as ``--concurrency`` callers go, and prints JSON:
its own CPU per request (user + system time of this process over the requests; the callers are
coroutines of the same process), and latency percentiles next to bare aiohttp calls to the same
endpoints, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import

import aiohttp
from litellm import Router


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "p50": at(0.5),
        "p95": at(0.95),
        "p99": at(0.99),
        "mean": round(statistics.mean(ordered), 2),
    }


def message(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Explain TCP and UDP briefly (peer request {i})"}]


async def steady(call, count: int, rate: float) -> tuple[list[float], float]:
    """``count`` calls offered at ``rate`` per second (open loop): latencies (ms), CPU s."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        await call(i)
        latencies.append((time.perf_counter() - started) * 1000)

    before, begun = cpu_s(), time.perf_counter()
    tasks = []
    for i in range(count):
        delay = begun + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return latencies, cpu_s() - before


async def closed(call, count: int, concurrency: int) -> tuple[float, float]:
    """``count`` calls by ``concurrency`` callers: (requests per second, CPU s)."""
    numbers = iter(range(count))

    async def caller() -> None:
        for i in numbers:
            await call(i)

    before, begun = cpu_s(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return count / (time.perf_counter() - begun), cpu_s() - before


async def main(args: argparse.Namespace) -> dict:
    router = Router(
        model_list=[
            {
                "model_name": "auto",
                "litellm_params": {
                    "model": f"openai/{args.model}",
                    "api_base": f"{url}/v1",
                    "api_key": "none",
                },
            }
            for url in args.url
        ],
        routing_strategy=args.strategy,
    )
    session = aiohttp.ClientSession()

    async def through_router(i: int) -> None:
        reply = await router.acompletion(
            model="auto", messages=message(i), max_tokens=args.max_tokens
        )
        assert reply.choices[0].message.content is not None

    async def bare(i: int) -> None:
        body = {"model": args.model, "messages": message(i), "max_tokens": args.max_tokens}
        async with session.post(
            f"{args.url[i % len(args.url)]}/v1/chat/completions", json=body
        ) as r:
            assert (await r.json())["choices"]

    try:
        for call in (through_router, bare):  # warm-up: connections, imports, caches
            await asyncio.gather(*(call(i) for i in range(20)))
        bare_ms, _ = await steady(bare, args.count, args.rate)
        router_ms, router_cpu = await steady(through_router, args.count, args.rate)
        peak, peak_cpu = await closed(through_router, args.count, args.concurrency)
    finally:
        await session.close()
    return {
        "peer": "litellm Router",
        "litellm_routing_strategy": args.strategy,
        "endpoints": len(args.url),
        f"at_{args.rate:g}_req_per_s": {
            "cpu_ms_per_request": round(router_cpu / args.count * 1000, 3),
            "latency_ms": percentiles(router_ms),
            "bare_aiohttp_latency_ms": percentiles(bare_ms),
            "added_latency_ms": {
                q: round(percentiles(router_ms)[q] - percentiles(bare_ms)[q], 2)
                for q in ("p50", "p99")
            },
        },
        "closed_loop": {
            "concurrency": args.concurrency,
            "req_per_s": round(peak, 1),
            "cpu_ms_per_request": round(peak_cpu / args.count * 1000, 3),
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", required=True, help="an endpoint's base URL")
    parser.add_argument("--model", required=True)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--strategy", default="simple-shuffle")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
