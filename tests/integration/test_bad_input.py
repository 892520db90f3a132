"""Odd and bad requests: a defined signal set or a clear error, never a crash or a drop."""

from __future__ import annotations

import json

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import DLQ, REQUESTS
from pipeline.bus.codec import decode
from pipeline.client import ResponseCollector, replay
from pipeline.envelope import ChatRequest, DeadLetter, RequestSection
from tests.integration.conftest import run
from tests.integration.helpers import eventually, landed, read_topic

pytestmark = pytest.mark.integration


def body(messages: list[dict]) -> RequestSection:
    return RequestSection(body=ChatRequest(messages=messages))


def test_odd_but_valid_requests_get_a_defined_signal_set(stack):
    empty = body([{"role": "user", "content": ""}])
    image_only = body(
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    )
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
        for i in range(10_000)
    ]
    many_turns = body(turns)
    huge = body([{"role": "user", "content": "lorem ipsum dolor sit amet " * 33_000}])  # ~900 KB
    requests = [empty, image_only, many_turns, huge]
    answers = run(replay(stack.settings.broker, requests, rate=0, timeout_s=120))
    assert set(answers) == {r.request_id for r in requests}
    for request in requests:
        assert answers[request.request_id].signals is not None
    e = answers[empty.request_id]
    assert e.result.status == "ok" and e.signals.language == "und"
    i = answers[image_only.request_id]
    assert i.result.status == "ok" and i.signals.images_present and i.signals.language == "und"
    m = answers[many_turns.request_id].signals
    assert (m.messages, m.turns, m.context_class) == (10_000, 5_000, "long")
    h = answers[huge.request_id]
    assert h.signals.prompt_tokens > 131_072
    assert h.result.status == "error" and h.result.error.type == "context_length_exceeded"
    landed(stack, [r.request_id for r in requests])


def test_oversize_and_invalid_utf8_get_dead_lettered_and_an_error_reply(stack):
    oversize = {
        "request": {
            "request_id": "oversize-1",
            "body": {"messages": [{"role": "user", "content": "x" * 2_000_000}]},
        }
    }
    bad_utf8 = (
        b'{"request": {"request_id": "bad-utf8-1", "body": {"messages": '
        b'[{"role": "user", "content": "caf\xe9 \xff"}]}}}'
    )

    async def publish_and_collect() -> dict:
        collector = ResponseCollector(stack.settings.broker)
        await collector.start()
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.settings.broker, max_request_size=8_000_000
        )
        await producer.start()
        try:
            await producer.send_and_wait(REQUESTS, json.dumps(oversize).encode(), key=b"o")
            await producer.send_and_wait(REQUESTS, bad_utf8, key=b"u")
            return await collector.wait_for(["oversize-1", "bad-utf8-1"], 60, lambda n: None)
        finally:
            await producer.stop()
            await collector.stop()

    answers = run(publish_and_collect())
    big = answers["oversize-1"].result.error
    assert big.type == "oversize" and "WRP_MAX_REQUEST_BYTES" in big.message
    assert answers["oversize-1"].request.body is None  # the 2 MB body is not echoed back
    assert answers["bad-utf8-1"].result.error.type == "invalid_json"

    def letters() -> dict[str, DeadLetter]:
        found = [decode(r.value, DeadLetter) for r in run(read_topic(stack.settings.broker, DLQ))]
        by_id = {d.request_id: d for d in found}
        return by_id if {"oversize-1", "bad-utf8-1"} <= by_id.keys() else {}

    by_id = eventually(letters, what="dead letters")
    assert by_id["oversize-1"].error_type == "oversize"
    assert by_id["bad-utf8-1"].error_type == "invalid_json"
    landed(stack, ["oversize-1", "bad-utf8-1"])

    def stored_letters() -> set[str]:
        # the 2.7 MB dead letter (the whole message, base64) lands too: the sink accepts dead
        # letters up to the producers' limit and never dead-letters a dead letter again
        rows = query_analytics(stack.settings, "dlq", {"since": "1h"})["rows"]
        kinds = {(r[0], r[1], r[2]) for r in rows}
        return kinds if ("wrp.requests", "signals", "oversize") in kinds else set()

    assert not any(t == DLQ for t, _, _ in eventually(stored_letters, what="stored dead letters"))
