"""The analytics sink while ClickHouse is unavailable: it pauses, keeps its batch, commits
nothing, and once ClickHouse is back lands every row exactly once (real Tansu broker, real chdb;
the outage is injected into the store's insert, the way a down server fails it)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.exceptions import OperationalError

from pipeline.bus.catalog import RESPONSES
from pipeline.bus.codec import encode
from pipeline.settings import Settings
from tests.integration.helpers import until
from tests.integration.sink import lone_broker, running_sink
from tests.unit.factories import make_served


async def committed(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="wrp-analytics")
    await consumer.start()
    try:
        offsets = [
            await consumer.committed(TopicPartition(RESPONSES, p))
            for p in consumer.partitions_for_topic(RESPONSES) or ()
        ]
        return sum(o or 0 for o in offsets)
    finally:
        await consumer.stop()


def test_clickhouse_down_pauses_the_sink_and_it_catches_up_without_duplicates(tmp_path):
    with lone_broker(tmp_path, sink_flush_ms=100) as settings:
        asyncio.run(outage(settings))


async def outage(settings: Settings) -> None:
    stage, runner, task = await running_sink(settings)

    down = True
    insert = stage.store.insert

    def insert_unless_down(*args):
        if down:
            raise OperationalError("Error HTTPConnectionPool: Connection refused (injected)")
        insert(*args)

    stage.store.insert = insert_unless_down
    metric = runner.metrics.registry.get_sample_value

    producer = AIOKafkaProducer(bootstrap_servers=settings.broker)
    await producer.start()
    try:
        for i in range(40):
            env = make_served(f"outage-{i}", tenant="outage")
            await producer.send_and_wait(RESPONSES, encode(env), key=env.key.encode())
    finally:
        await producer.stop()

    await until(lambda: (metric("wrp_stage_batch_failures_total") or 0) >= 3, "retries")
    assert metric("wrp_stage_paused") == 1
    assert await committed(settings.broker) == 0  # nothing acknowledged, nothing committed
    rows = "SELECT count() FROM requests WHERE tenant = 'outage'"
    assert stage.store.client.query(rows).result_rows == [(0,)]

    down = False
    await until(lambda: metric("wrp_stage_paused") == 0, "the sink to resume")

    async def all_committed() -> bool:
        return await committed(settings.broker) == 40

    deadline = time.monotonic() + 60
    while not await all_committed():
        assert time.monotonic() < deadline, "offsets never committed"
        await asyncio.sleep(0.2)
    summary = stage.store.query("summary", {"tenant": "outage"})
    assert dict(zip(summary["columns"], summary["rows"][0], strict=True))["requests"] == 40
    assert stage.store.client.query(rows).result_rows == [(40,)]

    runner.request_stop()
    await task
