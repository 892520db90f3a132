"""Scraping endpoints' vLLM ``/metrics`` for the policies that score by them (kv_aware).

Reads ``vllm:num_requests_waiting``, ``vllm:num_requests_running``, the KV usage gauge
(``vllm:kv_cache_usage_perc``, or ``vllm:gpu_cache_usage_perc`` before vLLM 0.10) and the prefix
cache counters ``vllm:prefix_cache_queries`` / ``vllm:prefix_cache_hits``, whose ratio over one
scrape interval is the recent hit rate. An endpoint that fails a scrape keeps its last scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pipeline.pool.endpoints import EndpointBook, PoolEndpoints, Scrape

log = logging.getLogger(__name__)

KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def parse_vllm_metrics(text: str) -> dict[str, float]:
    """Sum of every sample per metric name (counters under their ``_total`` sample name)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket", "_sum", "_count")):
                continue
            name = sample.name.removesuffix("_total")
            values[name] = values.get(name, 0.0) + sample.value
    return values


class MetricsScraper:
    """Scrapes every endpoint of the pools it is given, every ``interval_s``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._counters: dict[str, tuple[float, float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def scrape(self, book: EndpointBook) -> None:
        url = book.spec.url
        try:
            reply = await self.client.get(
                f"{url}/metrics", headers=book.credentials.headers, timeout=2.0
            )
            reply.raise_for_status()
            values = parse_vllm_metrics(reply.text)
        except (httpx.HTTPError, ValueError) as exc:
            # the error's type only: an encoding error would quote the credentials header
            log.debug("scrape of %s failed: %s", url, type(exc).__name__)
            return
        queries = values.get("vllm:prefix_cache_queries", 0.0)
        hits = values.get("vllm:prefix_cache_hits", 0.0)
        before = self._counters.get(url)
        self._counters[url] = (queries, hits)
        hit_rate = None
        if before is not None and queries > before[0]:
            hit_rate = (hits - before[1]) / (queries - before[0])
        kv = next((values[name] for name in KV_USAGE if name in values), None)
        book.scrape = Scrape(
            waiting=values.get("vllm:num_requests_waiting", 0.0),
            running=values.get("vllm:num_requests_running", 0.0),
            kv_usage=kv,
            prefix_hit_rate=hit_rate,
            at=time.monotonic(),
        )

    async def run(self, pools: dict[str, PoolEndpoints]) -> None:
        """Scrape the pools that use scraped metrics until cancelled."""
        while True:
            scraped = [p for p in pools.values() if p.pool.selection.uses_metrics]
            books = [b for p in scraped for b in p.books.values()]
            await asyncio.gather(*(self.scrape(b) for b in books))
            interval = min((p.pool.selection.scrape_interval_s for p in scraped), default=1.0)
            await asyncio.sleep(interval)

    def start(self, pools: dict[str, PoolEndpoints]) -> None:
        self._task = asyncio.create_task(self.run(pools))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
