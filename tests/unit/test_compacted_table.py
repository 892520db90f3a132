"""A compacted table whose follower failed on a record still closes: ``stop`` closes the
consumer and does not raise, so the shutdown of the process it is part of goes on past it."""

from __future__ import annotations

import asyncio

from pipeline.bus.clients import new_producer
from pipeline.bus.codec import encode
from pipeline.bus.memory import forget_broker, memory_broker
from pipeline.bus.table import CompactedTable
from pipeline.envelope import Usage

ADDRESS = "memory://table"
USAGE = Usage(scope="tenant", who="acme", window="day", start=0.0, partition=0)


def test_a_table_whose_follower_failed_still_closes_its_consumer():
    forget_broker(ADDRESS)
    memory_broker(ADDRESS).create_topic("wrp.usage")

    def refuse(value: Usage) -> None:
        raise RuntimeError("a bug in what the table hands its records to")

    async def main() -> bool:
        table = CompactedTable(ADDRESS, "wrp.usage", Usage, on_record=refuse, wait_ms=10)
        consumer, closed = table._consumer, asyncio.Event()
        stop = consumer.stop

        async def stop_and_say() -> None:
            await stop()
            closed.set()

        consumer.stop = stop_and_say  # type: ignore[method-assign]
        await table.start()
        await new_producer(ADDRESS).send_and_wait("wrp.usage", encode(USAGE), key=b"acme")
        while table._task is not None and not table._task.done():  # the follower fails
            await asyncio.sleep(0.01)
        await table.stop()
        return closed.is_set()

    assert asyncio.run(main())
