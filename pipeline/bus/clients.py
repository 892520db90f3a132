"""The Kafka client factory: every WRP producer and consumer is made here, and none of them can
create a topic.

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
from aiokafka.protocol.metadata import MetadataRequest


class _MetadataWithoutAutoCreation(MetadataRequest):
    """aiokafka's metadata request, never asking the broker to create what it names."""

    def __init__(
        self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None
    ) -> None:
        super().__init__(topics, allow_auto_topic_creation=False)


aiokafka.client.MetadataRequest = _MetadataWithoutAutoCreation  # type: ignore[misc]


def new_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (at-least-once) unless told otherwise."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **{"acks": "all", **options})


def new_consumer(bootstrap: str, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer that never commits on its own: offsets are committed explicitly, if at all."""
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, **{"enable_auto_commit": False, **options}
    )


async def started(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Start ``client``; one that cannot connect is closed before the error goes on."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise


async def broker_topics(producer: AIOKafkaProducer) -> set[str]:
    """Names of the topics on the broker (a metadata request for all topics creates none)."""
    cluster = await producer.client.fetch_all_metadata()
    return set(cluster.topics())
