"""The runner's retries on the in-memory broker: a batch that fails is retried until it goes
through (its outputs produced once), and pending work that keeps failing is dead-lettered with
an error reply."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from pipeline.bus.admin import create_topics
from pipeline.bus.catalog import DLQ, REQUESTS, RESPONSES, load_catalog
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import decode, encode
from pipeline.bus.memory import forget_broker, memory_broker
from pipeline.bus.runner import StageRunner
from pipeline.bus.stage import Inbound, Outbound, Output, Pending, Stage
from pipeline.envelope import ChatRequest, DeadLetter, Envelope, RequestSection, Result
from pipeline.settings import Settings

_names = itertools.count()


def request(request_id: str) -> bytes:
    body = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    return encode(Envelope(request=RequestSection(request_id=request_id, body=body)))


def answered(item: Inbound) -> Outbound:
    envelope = item.message.model_copy(update={"result": Result(status="ok", stage="test")})
    return Outbound(RESPONSES, envelope.key, envelope)


class FailsOnce(Stage):
    name = "fails-once"
    topics = (REQUESTS,)
    failures = 1

    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the first attempt fails")
        return [answered(item) for item in batch]


class PendingFails(Stage):
    name = "pending-fails"
    topics = (REQUESTS,)
    concurrency = 4
    calls = 0

    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        async def outputs() -> list[Output]:
            self.calls += 1
            raise RuntimeError("the pool call fails")

        return [Pending(item, outputs) for item in batch]


async def run(stage_class: type[Stage], tmp_path: Path, done) -> tuple[Stage, StageRunner]:
    address = f"memory://runner-test-{next(_names)}"
    forget_broker(address)
    settings = Settings(broker=address, state_dir=tmp_path / "state")
    await create_topics(address, load_catalog())
    await new_producer(address).send_and_wait(REQUESTS, request("r-1"), key=b"r-1")
    stage = stage_class(settings)
    runner = StageRunner(stage, settings, port=0)
    task = asyncio.create_task(runner.run())
    broker = memory_broker(address)
    for _ in range(3000):
        if task.done() or done(broker):
            break
        await asyncio.sleep(0.01)
    runner.request_stop()
    await task
    return stage, runner


def test_a_failed_batch_is_retried_until_it_goes_through(tmp_path):
    async def main() -> None:
        stage, runner = await run(FailsOnce, tmp_path, lambda b: b.records(RESPONSES))
        broker = memory_broker(stage.settings.broker)
        [answer] = [decode(r.value, Envelope) for r in broker.records(RESPONSES)]
        assert answer.request.request_id == "r-1" and answer.result.status == "ok"
        metric = runner.metrics.registry.get_sample_value
        assert metric("wrp_stage_batch_failures_total") == 1
        assert metric("wrp_stage_processed_total") == 1
        assert not broker.records(DLQ)

    asyncio.run(main())


def test_pending_work_that_keeps_failing_is_dead_lettered_with_an_error_reply(tmp_path):
    async def main() -> None:
        stage, _ = await run(PendingFails, tmp_path, lambda b: b.records(DLQ))
        broker = memory_broker(stage.settings.broker)
        assert stage.calls == 5  # PENDING_ATTEMPTS
        [letter] = [decode(r.value, DeadLetter) for r in broker.records(DLQ)]
        assert (letter.error_type, letter.request_id) == ("processing_failed", "r-1")
        [reply] = [decode(r.value, Envelope) for r in broker.records(RESPONSES)]
        assert reply.result.error.type == "processing_failed"
        [offset] = broker.committed["wrp-pending-fails"].values()
        assert offset == 1

    asyncio.run(main())
