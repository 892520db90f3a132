"""What the drills look at on a running stack: topic sizes and records, the analytics totals,
the stage processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from pipeline.analytics.access import query_analytics
from pipeline.bus.clients import new_consumer
from pipeline.stack import Stack


class Tail:
    """Reads a topic onward from given offsets, a call at a time."""

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int]) -> None:
        self.topic, self.start = topic, start
        self._consumer = new_consumer(bootstrap)

    async def __aenter__(self) -> Tail:
        await self._consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in sorted(self.start)]
        self._consumer.assign(partitions)
        for tp in partitions:
            self._consumer.seek(tp, self.start[tp.partition])
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def read(self) -> list:
        """The records added since the last call, up to the topic's end now (position past
        the reported end: the last batch is read, see :mod:`pipeline.bus.lag`)."""
        partitions = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(partitions)
        found: list = []
        while any([await self._consumer.position(tp) < ends[tp] for tp in partitions]):
            batch = await self._consumer.getmany(timeout_ms=500)
            found += [r for part in batch.values() for r in part]
        return found


def totals(stack: Stack) -> dict[str, int]:
    """Row counts of every table (deduplicated), and the rollup's request count."""
    result = query_analytics(stack.settings, "totals", {})
    return {k: v or 0 for k, v in zip(result["columns"], result["rows"][0], strict=True)}


async def quiet_totals(stack: Stack, timeout_s: float = 30) -> dict[str, int]:
    """:func:`totals` once they stop changing (what was in flight before a drill has landed:
    the sink flushes every ``WRP_SINK_FLUSH_MS``)."""
    pause = max(1.0, 3 * stack.settings.sink_flush_ms / 1000)
    deadline = time.monotonic() + timeout_s
    last = totals(stack)
    while time.monotonic() < deadline:
        await asyncio.sleep(pause)
        now = totals(stack)
        if now == last:
            break
        last = now
    return last


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def stage_pids(stack: Stack) -> dict[str, int]:
    return {name: proc.pid for name, proc in stack.processes.items() if proc.poll() is None}


def batch_failures(stack: Stack) -> float:
    """Batches that failed and were retried, summed over the batch stages."""
    total = 0.0
    for stage in ("signals", "safety", "router", "dispatch", "analytics"):
        url = f"http://127.0.0.1:{stack.settings.stage_port(stage)}/metrics"
        for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
            samples = family.samples
            total += sum(s.value for s in samples if s.name == "wrp_stage_batch_failures_total")
    return total


async def settle(check: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    """Wait until ``check()`` holds or ``timeout_s`` passed; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)
    return True
