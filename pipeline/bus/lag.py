"""How far behind a consumer group is: the records past its committed offsets. Read without
joining the group (an offset fetch needs no membership).

The end of a partition is the offset after its last record. Kafka's ListOffsets says so; the
embedded broker (Tansu 0.6) answers the base offset of the last record *batch* plus one instead
(ten records produced in one batch: end offset 1), so :func:`end_offsets` reads the last batch
to find its last record. On Kafka that read returns the last record and changes nothing.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from pipeline.bus.clients import Consumer, new_consumer


async def end_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float = 10
) -> dict[TopicPartition, int]:
    """The offset after each partition's last record (``consumer`` is re-assigned to
    ``partitions`` and positioned at their last batch)."""
    reported = await consumer.end_offsets(partitions)
    ends = dict(reported)
    unread = {tp for tp, end in reported.items() if end > 0}
    consumer.assign(list(unread))
    for tp in unread:
        consumer.seek(tp, reported[tp] - 1)
    deadline = time.monotonic() + timeout_s
    while unread and time.monotonic() < deadline:
        fetched = await consumer.getmany(timeout_ms=200)
        for tp, records in fetched.items():
            if records:
                ends[tp] = max(ends[tp], records[-1].offset + 1)
                unread.discard(tp)
    return ends


async def topic_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> the offset after its last record."""
    consumer = new_consumer(bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: end for tp, end in (await end_offsets(consumer, partitions)).items()}
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topics: tuple[str, ...]) -> int:
    """Records on ``topics`` past ``group``'s committed offsets (all of them if it committed
    none)."""
    reader = new_consumer(bootstrap)
    committed = new_consumer(bootstrap, group_id=group)
    await asyncio.gather(reader.start(), committed.start())
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(committed.partitions_for_topic(topic) or ())
        ]
        ends = await end_offsets(reader, partitions)
        lag = 0
        for tp in partitions:
            lag += max(0, ends[tp] - (await committed.committed(tp) or 0))
        return lag
    finally:
        await asyncio.gather(reader.stop(), committed.stop())
