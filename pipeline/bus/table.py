"""Tail a compacted topic into an in-memory dict (key -> latest value), from the beginning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from aiokafka import TopicPartition
from pydantic import ValidationError

from pipeline.bus.clients import new_consumer
from pipeline.bus.codec import decode
from pipeline.envelope import Contract

log = logging.getLogger(__name__)
T = TypeVar("T", bound=Contract)


class CompactedTable(Generic[T]):
    """``values`` follows the topic; a tombstone (null value) deletes its key. With
    ``on_record`` every value is handed to it instead of being kept in ``values``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        model: type[T],
        on_record: Callable[[T], None] | None = None,
        wait_ms: int = 500,
    ) -> None:
        self.topic = topic
        self.model = model
        self.on_record = on_record
        self.values: dict[str, T] = {}
        self.wait_ms = wait_ms
        # how long a fetch waits for new records: what is tailed arrives that much later at most
        self._consumer = new_consumer(bootstrap, fetch_max_wait_ms=wait_ms)
        self._task: asyncio.Task[None] | None = None
        self._ends: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic) or {0}
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        self._ends = await self._consumer.end_offsets(assigned)
        self._task = asyncio.create_task(self._follow())

    async def caught_up(self) -> None:
        """Return once every record that was on the topic at :meth:`start` has been read."""
        while True:
            positions = {tp: await self._consumer.position(tp) for tp in self._ends}
            if all(positions[tp] >= end for tp, end in self._ends.items()):
                return
            await asyncio.sleep(0.05)

    async def _follow(self) -> None:
        while True:
            records = await self._consumer.getmany(timeout_ms=1000)
            for record in (r for part in records.values() for r in part):
                key = record.key.decode() if record.key else None
                if key is None:
                    continue
                if record.value is None:
                    self.values.pop(key, None)
                    continue
                try:
                    value = decode(record.value, self.model)
                except (ValidationError, ValueError) as exc:
                    log.warning(
                        "%s: skipping invalid record at offset %d: %s",
                        self.topic,
                        record.offset,
                        exc,
                    )
                    continue
                if self.on_record is not None:
                    self.on_record(value)
                else:
                    self.values[key] = value

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            (ended,) = await asyncio.gather(self._task, return_exceptions=True)
            if isinstance(ended, Exception):  # the consumer is closed all the same
                log.warning("%s: the follower had stopped on %r", self.topic, ended)
        await self._consumer.stop()
