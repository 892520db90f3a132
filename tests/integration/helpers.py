"""Small helpers for integration tests: publish, read topics from the beginning, poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.analytics.access import query_analytics
from pipeline.envelope import ChatRequest, RequestSection

T = TypeVar("T")


def request(text: str, **extra) -> RequestSection:
    model = extra.pop("model", "auto")
    return RequestSection(
        body=ChatRequest(model=model, messages=[{"role": "user", "content": text}]), **extra
    )


async def read_topic(bootstrap: str, topic: str) -> list:
    """Every record currently on ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []
        while True:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            records += [r for part in batch.values() for r in part]
        return records
    finally:
        await consumer.stop()


def eventually(check: Callable[[], T | None], timeout_s: float = 60, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (behaviour, not timing, is asserted)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or check.__name__}")
        time.sleep(0.3)


async def until(check: Callable[[], T | None], what: str, timeout_s: float = 60) -> T:
    """:func:`eventually` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.2)
    return value


def totals(stack) -> dict:
    result = query_analytics(stack.settings, "totals", {})
    return dict(zip(result["columns"], result["rows"][0], strict=True))


def analytics_row(stack, request_id: str) -> dict | None:
    result = query_analytics(stack.settings, "request", {"request_id": request_id})
    return dict(zip(result["columns"], result["rows"][0], strict=True)) if result["rows"] else None


def landed(stack, request_ids: list[str]) -> None:
    """Wait until analytics has a row for every request (so later tests count from a still base)."""
    eventually(lambda: all(analytics_row(stack, rid) for rid in request_ids), what="analytics rows")
