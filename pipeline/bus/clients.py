"""The Kafka client factory: every WRP producer, consumer and admin client is made here, and no
producer or consumer can create a topic. A bootstrap address ``memory://<name>`` gives clients of
an in-process broker instead (:mod:`pipeline.bus.memory`), for stage tests without a broker.

Topics come from the catalog (``wrp topics create``, with explicit partitions, retention and
cleanup policy). A Kafka client that names an unknown topic asks the broker to auto-create it
(aiokafka always sets ``allow_auto_topic_creation`` in its metadata requests), and Tansu, like a
Kafka broker with ``auto.create.topics.enable``, obeys: one mistyped or hostile topic name would
become a topic with default configs. Importing this module makes every metadata request of the
process say ``allow_auto_topic_creation=false`` (Tansu honours it), so a send to a topic that does
not exist fails instead; ``tests/unit/test_clients.py`` and the integration tests check it.
"""

from __future__ import annotations

from typing import Any

import aiokafka.client
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.metadata import MetadataRequest

from pipeline.bus.memory import (
    MemoryAdmin,
    MemoryConsumer,
    MemoryProducer,
    is_memory,
    memory_broker,
)


class _MetadataWithoutAutoCreation(MetadataRequest):
    """aiokafka's metadata request, never asking the broker to create what it names."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None
    ) -> None:
        super().__init__(topics, allow_auto_topic_creation=False)


aiokafka.client.MetadataRequest = _MetadataWithoutAutoCreation  # type: ignore[misc]


Producer = AIOKafkaProducer | MemoryProducer
Consumer = AIOKafkaConsumer | MemoryConsumer


def new_producer(bootstrap: str, **options: Any) -> Producer:
    """A producer that waits for every in-sync replica (at-least-once) unless told otherwise."""
    if is_memory(bootstrap):
        return MemoryProducer(memory_broker(bootstrap), **options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **{"acks": "all", **options})


def new_consumer(bootstrap: str, *topics: str, **options: Any) -> Consumer:
    """A consumer that never commits on its own: offsets are committed explicitly, if at all."""
    if is_memory(bootstrap):
        return MemoryConsumer(memory_broker(bootstrap), *topics, **options)
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, **{"enable_auto_commit": False, **options}
    )


def new_admin(bootstrap: str, **options: Any) -> AIOKafkaAdminClient | MemoryAdmin:
    """An admin client (topic administration)."""
    if is_memory(bootstrap):
        return MemoryAdmin(memory_broker(bootstrap), **options)
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)


#: How long the broker may hold a fetch while records flow.
FETCH_BUSY_MS = 5


class FetchPacer:
    """How long the broker may hold a consumer's next fetch, set as records flow or not.

    A fetch that finds records returns at once; one that finds none is held for its wait, and
    the embedded broker holds it to the end even when records arrive meanwhile. A short wait
    spins an idle consumer (at 5 ms: 200 fetches a second, ~80 CPU-ms/s of client and broker);
    a long one delays the first record after a quiet spell by up to the wait. So the wait is
    ``busy_ms`` while records flow and doubles with every empty poll up to ``idle_ms``. (Waiting
    half the usual gap between records instead saved 1% of CPU at 30 requests a second and cost
    every hop ~8 ms: measured, dropped.)
    (aiokafka reads the wait from its fetcher for every request it builds; there is no public
    setter, hence the private attribute.)
    """

    def __init__(self, consumer: Consumer, busy_ms: int, idle_ms: int, poll_ms: int = 20) -> None:
        self.consumer, self.busy_ms, self.idle_ms = consumer, busy_ms, max(busy_ms, idle_ms)
        self.poll_ms = poll_ms
        self.wait_ms = busy_ms
        self._apply()

    def polled(self, records: int) -> int:
        """Note what a poll returned; how long the next poll (``getmany``) may wait: records
        arriving end it at once, so a long one costs no latency."""
        wait = self.busy_ms if records else min(self.idle_ms, self.wait_ms * 2)
        if wait != self.wait_ms:
            self.wait_ms = wait
            self._apply()
        return max(self.wait_ms, self.poll_ms)

    def _apply(self) -> None:
        fetcher = getattr(self.consumer, "_fetcher", None)
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = self.wait_ms


async def started(client: Producer | Consumer) -> None:
    """Start ``client``; one that cannot connect is closed before the error goes on."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


async def broker_topics(producer: Producer) -> set[str]:
    """Names of the topics on the broker (a metadata request for all topics creates none)."""
    if isinstance(producer, MemoryProducer):
        return producer.broker.topics()
    cluster = await producer.client.fetch_all_metadata()
    return set(cluster.topics())
