"""The analytics sink while ClickHouse is unavailable: it pauses, keeps its batch, commits
nothing, and once ClickHouse is back lands every row exactly once (real Tansu broker, real chdb;
the outage is injected into the store's insert, the way a down server fails it)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_connect.driver.exceptions import OperationalError

from pipeline.bus.admin import create_topics
from pipeline.bus.broker import start_broker
from pipeline.bus.catalog import RESPONSES, load_catalog
from pipeline.bus.codec import encode
from pipeline.bus.runner import StageRunner
from pipeline.settings import Settings
from pipeline.stages.analytics import AnalyticsStage
from tests.integration.conftest import free_port
from tests.integration.helpers import until
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
    port = free_port()
    broker = start_broker(port, tmp_path / "broker.log")
    settings = Settings(
        broker=f"127.0.0.1:{port}",
        state_dir=tmp_path,
        metrics_port_base=free_port(),
        sink_flush_ms=100,
    )
    try:
        asyncio.run(outage(settings))
    finally:
        broker.terminate()
        broker.wait(30)


async def outage(settings: Settings) -> None:
    await create_topics(settings.broker, load_catalog())
    stage = AnalyticsStage(settings)
    runner = StageRunner(stage, settings)
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.status["state"] == "running", "the sink to start")

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
