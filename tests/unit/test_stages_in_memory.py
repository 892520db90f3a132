"""Stages run through the real :class:`StageRunner` on the in-memory broker (``memory://``): a
request in, a decision or an answer out, offsets committed, a malformed record dead-lettered."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiokafka import TopicPartition

from pipeline.bus.admin import create_topics
from pipeline.bus.catalog import DLQ, POOL_STATE, RESPONSES, ROUTED, SCREENED, load_catalog
from pipeline.bus.clients import new_consumer, new_producer
from pipeline.bus.codec import decode, encode
from pipeline.bus.memory import MemoryBroker, forget_broker, memory_broker
from pipeline.bus.runner import MissingTopics, StageRunner
from pipeline.envelope import (
    ChatRequest,
    DeadLetter,
    Decision,
    Envelope,
    PoolState,
    RequestSection,
    Safety,
)
from pipeline.settings import DEFAULT_POLICY, Settings
from pipeline.stages.registry import build_stage
from tests.unit.factories import make_signals

_names = itertools.count()


def screened(request_id: str) -> Envelope:
    """A request as the router receives it: with signals and an allowing safety section."""
    body = ChatRequest(messages=[{"role": "user", "content": "hello there"}])
    return Envelope(
        request=RequestSection(request_id=request_id, body=body),
        signals=make_signals(),
        safety=Safety(action="allow", jailbreak_score=0.0),
    )


#: A record that is not JSON, though its request id can still be read: it is dead-lettered
#: and its client answered with an error.
MALFORMED = b'{"request": {"request_id": "broken-1", "body": {"messages": [{"role": "us'


async def run_stage(
    name: str, settings: Settings, inputs: list[tuple[str, bytes]], done: Callable[[], bool]
) -> MemoryBroker:
    """Run stage ``name`` on a fresh in-memory broker with every catalog topic; publish
    ``inputs`` (topic, value); stop once ``done()`` holds (or after a generous bound, so a
    broken stage fails its assertions instead of hanging)."""
    broker = memory_broker(settings.broker)
    await create_topics(settings.broker, load_catalog())
    producer = new_producer(settings.broker)
    for topic, value in inputs:
        await producer.send_and_wait(topic, value, key=b"k")
    runner = StageRunner(build_stage(name, settings), settings, port=0)
    task = asyncio.create_task(runner.run())
    for _ in range(3000):
        if task.done() or done():
            break
        await asyncio.sleep(0.01)
    runner.request_stop()
    await task
    return broker


async def check_committed(settings: Settings, group: str, topic: str) -> None:
    """``group`` committed every record of ``topic`` (two records, on one partition: same key)."""
    consumer = new_consumer(settings.broker, group_id=group)
    ends = await consumer.end_offsets(
        [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    )
    assert sum(ends.values()) == 2
    for tp, end in ends.items():
        assert await consumer.committed(tp) == (end or None)


def settings_for(tmp_path: Path, policy: Path = DEFAULT_POLICY) -> Settings:
    name = f"memory://stage-test-{next(_names)}"
    forget_broker(name)
    return Settings(broker=name, state_dir=tmp_path / "state", policy=policy)


def values(broker: MemoryBroker, topic: str) -> list[bytes]:
    return [r.value for r in broker.records(topic) if r.value is not None]


def check_dead_letter(broker: MemoryBroker, stage: str, topic: str) -> None:
    [letter] = [decode(v, DeadLetter) for v in values(broker, DLQ)]
    assert (letter.stage, letter.topic, letter.error_type) == (stage, topic, "invalid_json")
    assert letter.request_id == "broken-1"
    errors = [decode(v, Envelope) for v in values(broker, RESPONSES)]
    [reply] = [e for e in errors if e.request.request_id == "broken-1"]
    assert reply.result.status == "error" and reply.result.error.type == "invalid_json"


def test_router_stage_routes_a_request_and_dead_letters_a_malformed_record(tmp_path):
    settings = settings_for(tmp_path)

    async def main() -> None:
        inputs = [(SCREENED, encode(screened("route-1"))), (SCREENED, MALFORMED)]
        broker = memory_broker(settings.broker)
        await run_stage(
            "router",
            settings,
            inputs,
            lambda: bool(broker.records(ROUTED)) and bool(broker.records(DLQ)),
        )
        [routed] = [decode(v, Envelope) for v in values(broker, ROUTED)]
        assert routed.request.request_id == "route-1"
        assert routed.decision is not None and routed.decision.model
        check_dead_letter(broker, "router", SCREENED)
        await check_committed(settings, "wrp-router", SCREENED)

    asyncio.run(main())


def pool_policy(path: Path, url: str) -> Path:
    """The default policy with every endpoint of every pool at ``url``."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    for pool in data["pools"]:
        pool["endpoints"] = [{"url": url}]
    path.write_text(yaml.safe_dump(data))
    return path


async def fake_pool() -> tuple[web.AppRunner, str]:
    """An OpenAI-compatible endpoint that answers every chat completion the same."""

    async def complete(request: web.Request) -> web.Response:
        body = await request.json()
        answer = {
            "id": "fake",
            "object": "chat.completion",
            "model": body.get("model", "m"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "fake answer"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def routed(request_id: str) -> Envelope:
    """A request as dispatch receives it: routed to the small model."""
    envelope = screened(request_id)
    decision = Decision(
        decision="general",
        candidates=["wrp-small-8b"],
        model="wrp-small-8b",
        pool="small",
        strategy="static",
    )
    return envelope.model_copy(update={"decision": decision})


def test_dispatch_stage_answers_from_the_pool_and_dead_letters_a_malformed_record(tmp_path):
    async def main() -> None:
        pool, url = await fake_pool()
        try:
            settings = settings_for(tmp_path, pool_policy(tmp_path / "policy.yaml", url))
            broker = memory_broker(settings.broker)

            def answered() -> bool:
                return any(b"dispatch-1" in v for v in values(broker, RESPONSES))

            inputs = [(ROUTED, encode(routed("dispatch-1"))), (ROUTED, MALFORMED)]
            await run_stage(
                "dispatch", settings, inputs, lambda: answered() and bool(broker.records(DLQ))
            )
        finally:
            await pool.cleanup()
        answers = [decode(v, Envelope) for v in values(broker, RESPONSES)]
        [answer] = [a for a in answers if a.request.request_id == "dispatch-1"]
        assert answer.result.status == "ok", answer.result
        assert json.dumps(answer.result.response).count("fake answer") == 1
        assert answer.outcome is not None and answer.outcome.model == "wrp-small-8b"
        check_dead_letter(broker, "dispatch", ROUTED)
        await check_committed(settings, "wrp-dispatch", ROUTED)
        assert all(decode(v, PoolState) for v in values(broker, POOL_STATE))

    asyncio.run(main())


def test_a_stage_refuses_to_start_without_its_topics(tmp_path):
    settings = settings_for(tmp_path)

    async def main() -> None:
        runner = StageRunner(build_stage("router", settings), settings, port=0)
        with pytest.raises(MissingTopics):
            await runner.run()

    asyncio.run(main())
