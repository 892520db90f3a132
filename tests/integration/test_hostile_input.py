"""Nothing a client sends can steer the pipeline itself: reply topics are an allow-list, no topic
is created by a producer, an answered envelope never re-enters, hops are bounded, and a broken
record whose request id is readable still gets its error reply."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from pipeline.bus.admin import create_new_topics, describe_topics
from pipeline.bus.catalog import DLQ, REQUESTS
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import decode, encode
from pipeline.client import ResponseCollector, replay
from pipeline.envelope import DeadLetter, Envelope
from tests.integration.conftest import run
from tests.integration.helpers import eventually, read_topic, request

pytestmark = pytest.mark.integration


def end_offsets(bootstrap: str, topic: str) -> int:
    return len(run(read_topic(bootstrap, topic)))


def letters_for(bootstrap: str, request_ids: set[str]) -> dict[str, DeadLetter]:
    found = [decode(r.value, DeadLetter) for r in run(read_topic(bootstrap, DLQ))]
    by_id = {d.request_id: d for d in found if d.request_id in request_ids}
    return by_id if by_id.keys() == request_ids else {}


async def publish_raw(bootstrap: str, records: list[bytes], wanted: list[str]) -> dict:
    """Publish raw records to wrp.requests; the replies on wrp.responses for ``wanted``."""
    collector = ResponseCollector(bootstrap)
    await collector.start()
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for raw in records:
            await producer.send_and_wait(REQUESTS, raw, key=b"hostile")
        return await collector.wait_for(wanted, 60)
    finally:
        await producer.stop()
        await collector.stop()


def envelope_bytes(request_id: str, **request_fields) -> bytes:
    section = request(f"hostile {request_id}: what is 2 + 2?", request_id=request_id)
    data = json.loads(Envelope(request=section).model_dump_json())
    data["request"].update(request_fields)
    return json.dumps(data).encode()


def test_reply_to_a_pipeline_topic_or_an_unknown_one_is_an_error_and_loops_nothing(stack):
    bootstrap = stack.settings.broker
    before = end_offsets(bootstrap, REQUESTS)
    records = {
        "loop-requests": envelope_bytes("loop-requests", reply_to="wrp.requests"),
        "loop-routed": envelope_bytes("loop-routed", reply_to="wrp.routed"),
        "unknown-topic": envelope_bytes("unknown-topic", reply_to="no.such.topic"),
        "unmade-reply": envelope_bytes("unmade-reply", reply_to="wrp.replies.never-made"),
        "loop-and-hops": envelope_bytes("loop-and-hops", reply_to="wrp.requests", hops=99),
    }
    answers = run(publish_raw(bootstrap, list(records.values()), list(records)))
    assert set(answers) == set(records)
    for env in answers.values():
        assert env.result.status == "error" and env.result.error.type == "invalid_reply_to"
    assert "consumes" in answers["loop-requests"].result.error.message
    assert "does not exist" in answers["unmade-reply"].result.error.message
    eventually(lambda: letters_for(bootstrap, set(records)), what="the dead letters")
    # nothing was fed back: wrp.requests holds exactly what was published, and no topic appeared
    assert end_offsets(bootstrap, REQUESTS) == before + len(records)
    topics = run(describe_topics(bootstrap))
    assert "no.such.topic" not in topics and "wrp.replies.never-made" not in topics


def test_an_existing_prefixed_reply_topic_gets_the_answer(stack):
    bootstrap = stack.settings.broker
    topic = "wrp.replies.team-a"
    run(create_new_topics(bootstrap, [NewTopic(topic, 1, 1)]))

    async def scenario() -> dict[str, Envelope]:
        collector = ResponseCollector(bootstrap, topic)
        await collector.start()
        producer = new_producer(bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                REQUESTS, envelope_bytes("team-a-1", reply_to=topic), key=b"team-a-1"
            )
            return await collector.wait_for(["team-a-1"], 60)
        finally:
            await producer.stop()
            await collector.stop()

    answers = run(scenario())
    assert answers["team-a-1"].result.status == "ok"


def test_an_answered_envelope_or_one_past_its_hop_budget_is_refused(stack):
    bootstrap = stack.settings.broker
    (answered,) = run(replay(bootstrap, [request("answer me once")], rate=0, timeout_s=60)).values()
    again = json.loads(answered.model_dump_json())
    again["request"]["request_id"] = "answered-again"
    looping = envelope_bytes("looping", hops=stack.settings.max_hops + 1)
    answers = run(
        publish_raw(bootstrap, [json.dumps(again).encode(), looping], ["answered-again", "looping"])
    )
    assert answers["answered-again"].result.error.type == "unexpected_section"
    assert answers["looping"].result.error.type == "hop_limit_exceeded"


def test_truncated_json_with_a_readable_request_id_gets_an_error_reply(stack):
    whole = envelope_bytes("truncated-1")
    answers = run(publish_raw(stack.settings.broker, [whole[: len(whole) - 40]], ["truncated-1"]))
    assert answers["truncated-1"].result.error.type == "invalid_json"
    eventually(lambda: letters_for(stack.settings.broker, {"truncated-1"}), what="the dead letter")


def test_a_producer_never_creates_a_topic(stack):
    bootstrap = stack.settings.broker

    async def send() -> None:
        producer = new_producer(bootstrap, request_timeout_ms=2000)
        await producer.start()
        try:
            await asyncio.wait_for(producer.send_and_wait("wrp.typo", encode(request("x"))), 10)
        finally:
            await producer.stop()

    with pytest.raises((KafkaError, TimeoutError)):
        run(send())
    assert "wrp.typo" not in run(describe_topics(bootstrap))
