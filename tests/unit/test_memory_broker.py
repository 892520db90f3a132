"""The in-memory broker behind ``memory://`` addresses: what the runner relies on of a Kafka
client, without a broker process."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError

from pipeline.bus.clients import broker_topics, new_admin, new_consumer, new_producer
from pipeline.bus.memory import MemoryConsumer, MemoryProducer, forget_broker, memory_broker

ADDRESS = "memory://unit"


def fresh() -> None:
    forget_broker(ADDRESS)
    memory_broker(ADDRESS).create_topic("t", partitions=2)


def test_the_factory_hands_out_memory_clients_for_a_memory_address():
    assert isinstance(new_producer(ADDRESS), MemoryProducer)
    assert isinstance(new_consumer(ADDRESS, group_id="g"), MemoryConsumer)


def test_sends_keep_per_key_order_and_a_missing_topic_is_an_error():
    fresh()

    async def main() -> None:
        producer = new_producer(ADDRESS)
        assert await broker_topics(producer) == {"t"}
        for i in range(4):
            await producer.send_and_wait("t", str(i).encode(), key=b"same")
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send("nope", b"x")
        consumer = new_consumer(ADDRESS, group_id="g", auto_offset_reset="earliest")
        consumer.subscribe(["t"])
        await consumer.start()
        fetched = await consumer.getmany(timeout_ms=0)
        [(tp, records)] = fetched.items()
        assert [r.value for r in records] == [b"0", b"1", b"2", b"3"]
        assert consumer.highwater(tp) == 4

    asyncio.run(main())


def test_paused_partitions_return_nothing_and_commits_are_kept_per_group():
    fresh()

    async def main() -> None:
        producer = new_producer(ADDRESS)
        await producer.send_and_wait("t", b"a", partition=0)
        await producer.send_and_wait("t", b"b", partition=1)
        consumer = new_consumer(ADDRESS, group_id="g", auto_offset_reset="earliest")
        consumer.subscribe(["t"])
        await consumer.start()
        consumer.pause(TopicPartition("t", 0))
        fetched = await consumer.getmany(timeout_ms=0, max_records=10)
        assert list(fetched) == [TopicPartition("t", 1)]
        consumer.resume(*consumer.paused())
        assert list(await consumer.getmany(timeout_ms=0)) == [TopicPartition("t", 0)]
        await consumer.commit({TopicPartition("t", 0): 1})
        again = new_consumer(ADDRESS, group_id="g", auto_offset_reset="earliest")
        again.subscribe(["t"])
        await again.start()
        assert await again.committed(TopicPartition("t", 0)) == 1
        assert list(await again.getmany(timeout_ms=0)) == [TopicPartition("t", 1)]

    asyncio.run(main())


def test_a_waiting_fetch_returns_when_a_record_arrives():
    fresh()

    async def main() -> None:
        consumer = new_consumer(ADDRESS)
        consumer.assign([TopicPartition("t", 0)])
        waiting = asyncio.create_task(consumer.getmany(timeout_ms=60_000))
        await asyncio.sleep(0)
        await new_producer(ADDRESS).send_and_wait("t", b"late", partition=0)
        fetched = await waiting
        assert [r.value for r in fetched[TopicPartition("t", 0)]] == [b"late"]

    asyncio.run(main())


def test_the_admin_client_creates_and_describes_topics():
    forget_broker(ADDRESS)

    async def main() -> None:
        from aiokafka.admin import NewTopic

        admin = new_admin(ADDRESS)
        await admin.create_topics([NewTopic("u", 3, 1)])
        assert await admin.list_topics() == ["u"]
        [described] = await admin.describe_topics(["u"])
        assert len(described["partitions"]) == 3

    asyncio.run(main())
