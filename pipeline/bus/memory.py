"""An in-memory broker with the subset of aiokafka's producer, consumer and admin interface
that WRP uses, for fast stage tests through the real :class:`~pipeline.bus.runner.StageRunner`
without a broker process (like the local broker backend of Sentry's Arroyo).

The client factory (:mod:`pipeline.bus.clients`) hands these out for a bootstrap address of
the form ``memory://<name>``: every client given the same address shares one
:class:`MemoryBroker` in this process. Topics are created as on Kafka (``wrp topics create``
through the admin client, or :meth:`MemoryBroker.create_topic`); sending to a topic that does
not exist fails. A consumer group has one member, which is assigned every partition of what it
subscribes to; committed offsets are kept per group. Sends are acknowledged at once. Nothing
is persisted, and there is no replication, no rebalance and no transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition

#: Bootstrap addresses with this prefix name an in-memory broker.
MEMORY_SCHEME = "memory://"

_brokers: dict[str, MemoryBroker] = {}


def is_memory(bootstrap: str) -> bool:
    return bootstrap.startswith(MEMORY_SCHEME)


def memory_broker(bootstrap: str) -> MemoryBroker:
    """The in-memory broker at ``bootstrap`` (``memory://<name>``), created on first use."""
    return _brokers.setdefault(bootstrap, MemoryBroker())


def forget_broker(bootstrap: str) -> None:
    """Drop the in-memory broker at ``bootstrap``: the next use of the address starts empty."""
    _brokers.pop(bootstrap, None)


class MemoryBroker:
    """Topics as lists of records per partition, and each group's committed offsets."""

    def __init__(self) -> None:
        self.partitions: dict[str, list[list[ConsumerRecord]]] = {}
        self.committed: dict[str, dict[TopicPartition, int]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._partitioner = DefaultPartitioner()
        self._unkeyed = 0

    def create_topic(self, name: str, partitions: int = 1) -> None:
        if name in self.partitions:
            raise TopicAlreadyExistsError(name)
        self.partitions[name] = [[] for _ in range(partitions)]

    def topics(self) -> set[str]:
        return set(self.partitions)

    def records(self, topic: str) -> list[ConsumerRecord]:
        """Every record on ``topic``, partition after partition."""
        return [record for part in self.partitions.get(topic, []) for record in part]

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> RecordMetadata:
        parts = self.partitions.get(topic)
        if parts is None:
            raise UnknownTopicOrPartitionError(f"topic {topic} does not exist")
        if partition is None:
            every = list(range(len(parts)))
            if key is None:  # round robin: deterministic, unlike aiokafka's random choice
                partition, self._unkeyed = self._unkeyed % len(parts), self._unkeyed + 1
            else:
                partition = self._partitioner(key, every, every)
        log = parts[partition]
        record = ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=len(log),
            timestamp=int(time.time() * 1000),
            timestamp_type=0,
            key=key,
            value=value,
            checksum=None,
            serialized_key_size=len(key) if key is not None else -1,
            serialized_value_size=len(value) if value is not None else -1,
            headers=tuple(headers or ()),
        )
        log.append(record)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        tp = TopicPartition(topic, partition)
        return RecordMetadata(topic, partition, tp, record.offset, record.timestamp, 0, 0)

    def end(self, tp: TopicPartition) -> int:
        return len(self.partitions[tp.topic][tp.partition])

    async def wait(self, seconds: float) -> None:
        """Until a record arrives on any topic, ``seconds`` at most."""
        if seconds <= 0:
            return
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(arrived)
        try:
            await asyncio.wait({arrived}, timeout=seconds)
        finally:
            self._waiters.discard(arrived)


class MemoryProducer:
    """aiokafka's producer interface on a :class:`MemoryBroker`; every send is acknowledged."""

    def __init__(self, broker: MemoryBroker, **options: Any) -> None:
        self.broker = broker

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        acknowledged: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(self.broker.append(topic, value, key, partition, headers))
        return acknowledged

    async def send_and_wait(self, topic: str, value: bytes | None = None, **kwargs: Any) -> Any:
        return await (await self.send(topic, value, **kwargs))


class MemoryConsumer:
    """aiokafka's consumer interface on a :class:`MemoryBroker`: subscribed (one member per
    group, every partition assigned) or assigned partitions by hand."""

    def __init__(
        self,
        broker: MemoryBroker,
        *topics: str,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        **options: Any,
    ) -> None:
        self.broker, self.group_id, self.reset = broker, group_id, auto_offset_reset
        self._topics: tuple[str, ...] = topics
        self._listener: Any = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}

    def subscribe(self, topics: Iterable[str] = (), listener: Any = None) -> None:
        self._topics, self._listener = tuple(topics), listener

    async def start(self) -> None:
        if self._topics:
            partitions = {
                TopicPartition(topic, p)
                for topic in self._topics
                for p in range(len(self.broker.partitions.get(topic, [])))
            }
            self.assign(partitions)
            if self._listener is not None:
                await self._listener.on_partitions_assigned(set(partitions))

    async def stop(self) -> None:
        pass

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._assigned = set(partitions)
        self._paused &= self._assigned
        committed = self.broker.committed.get(self.group_id or "", {})
        for tp in self._assigned:
            start = 0 if self.reset == "earliest" else self.broker.end(tp)
            self._positions[tp] = committed.get(tp, start)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        parts = self.broker.partitions.get(topic)
        return None if parts is None else set(range(len(parts)))

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(tp for tp in partitions if tp in self._assigned)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions or tuple(self._assigned):
            self._positions[tp] = 0

    async def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    def highwater(self, tp: TopicPartition) -> int:
        return self.broker.end(tp)

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.broker.end(tp) for tp in partitions}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.broker.committed.setdefault(self.group_id or "", {}).update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.broker.committed.get(self.group_id or "", {}).get(tp)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """The records past each fetchable partition's position (``max_records`` in all at
        most), waiting up to ``timeout_ms`` for the first to arrive."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            fetched = self._fetch(partitions, max_records)
            left = deadline - time.monotonic()
            if fetched or left <= 0:
                return fetched
            await self.broker.wait(left)

    def _fetch(
        self, partitions: Sequence[TopicPartition], max_records: int | None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        fetched: dict[TopicPartition, list[ConsumerRecord]] = {}
        room = max_records if max_records is not None else float("inf")
        chosen = partitions or sorted(self._assigned)
        for tp in chosen:
            if tp in self._paused or tp not in self._assigned or room <= 0:
                continue
            log = self.broker.partitions[tp.topic][tp.partition]
            start = self._positions.get(tp, 0)
            part = log[start : start + int(min(room, len(log)))]
            if part:
                fetched[tp] = part
                self._positions[tp] = part[-1].offset + 1
                room -= len(part)
        return fetched


class MemoryAdmin:
    """aiokafka's admin client interface on a :class:`MemoryBroker` (topics only)."""

    def __init__(self, broker: MemoryBroker, **options: Any) -> None:
        self.broker = broker

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return sorted(self.broker.topics())

    async def create_topics(self, new_topics: list[Any]) -> None:
        for topic in new_topics:
            self.broker.create_topic(topic.name, topic.num_partitions)

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [
            {"topic": name, "partitions": [{"partition": p} for p in range(len(parts))]}
            for name, parts in self.broker.partitions.items()
            if name in topics
        ]
