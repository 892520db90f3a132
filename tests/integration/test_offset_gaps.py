"""A consumer that skips records (a broker or client fault, injected here by moving the fetch
position) does not lose them: the runner fetches the partition again from the gap."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from pipeline.bus.admin import create_topics
from pipeline.bus.catalog import RESPONSES, load_catalog
from pipeline.bus.codec import encode
from pipeline.settings import Settings
from tests.integration.helpers import until
from tests.integration.sink import lone_broker, running_sink
from tests.unit.factories import make_served


def test_a_fetch_that_skips_offsets_is_refetched_and_nothing_is_lost(tmp_path):
    with lone_broker(tmp_path, sink_batch_rows=5, sink_flush_ms=50) as settings:
        asyncio.run(skip_three(settings))


async def skip_three(settings: Settings) -> None:
    await create_topics(settings.broker, load_catalog())  # 30 records wait on one partition
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker)
    await producer.start()
    try:
        for i in range(30):
            env = make_served(f"gap-{i}", tenant="gap")
            await producer.send_and_wait(RESPONSES, encode(env), partition=0)
    finally:
        await producer.stop()

    stage, runner, task = await running_sink(settings)
    consumer = runner.consumer
    fetch = consumer.getmany
    skipped = False

    async def getmany_skipping_three(*args, **kwargs):
        nonlocal skipped
        records = await fetch(*args, **kwargs)
        for tp, part in records.items():
            if tp.topic == RESPONSES and part and not skipped:
                consumer.seek(tp, part[-1].offset + 4)  # the next fetch jumps over three
                skipped = True
        return records

    consumer.getmany = getmany_skipping_three
    rows = "SELECT count(), uniqExact(request_id) FROM requests WHERE tenant = 'gap'"
    await until(lambda: stage.store.client.query(rows).result_rows[0][0] >= 30, "all 30 rows")
    assert skipped
    assert stage.store.client.query(rows).result_rows == [(30, 30)]
    metric = runner.metrics.registry.get_sample_value
    assert metric("wrp_stage_offset_gaps_total", {"topic": RESPONSES}) == 1
    runner.request_stop()
    await task
