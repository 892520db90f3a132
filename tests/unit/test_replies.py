"""The reply-topic allow-list."""

from __future__ import annotations

import asyncio
import time

from pipeline.bus.catalog import load_catalog
from pipeline.bus.replies import ReplyTopics


def replies(existing: set[str], asked: list[int] | None = None) -> ReplyTopics:
    async def list_topics() -> set[str]:
        if asked is not None:
            asked.append(1)
        return existing

    return ReplyTopics(load_catalog(), "wrp.replies.", list_topics)


def check(topics: ReplyTopics, topic: str) -> str | None:
    return asyncio.run(topics.check(topic))


def test_the_responses_topic_and_existing_prefixed_topics_are_allowed():
    topics = replies({"wrp.replies.team-a"})
    assert check(topics, "wrp.responses") is None
    assert check(topics, "wrp.replies.team-a") is None


def test_pipeline_topics_are_never_reply_topics_whatever_the_prefix():
    for prefix in ("wrp.replies.", "wrp.", ""):
        topics = ReplyTopics(load_catalog(), prefix, lambda: asyncio.sleep(0, {"wrp.requests"}))
        for name in ("wrp.requests", "wrp.signals", "wrp.routed", "wrp.dlq", "wrp.feedback"):
            refused = check(topics, name)
            assert refused is not None and "consumes" in refused, (prefix, name)


def test_other_names_and_missing_topics_are_refused_with_the_fix():
    topics = replies(set())
    assert "WRP_REPLY_TOPIC_PREFIX" in check(topics, "no.such.topic")
    assert "WRP_REPLY_TOPIC_PREFIX" in check(topics, "wrp.replies.")
    assert "does not exist" in check(topics, "wrp.replies.absent")


def test_a_burst_of_unknown_reply_topics_asks_the_broker_once():
    asked: list[int] = []
    topics = replies({"wrp.replies.known"}, asked)
    published = time.time()

    async def burst() -> list[str | None]:
        names = [f"wrp.replies.x{i}" for i in range(50)] + ["wrp.replies.known"]
        return [await topics.check(name, published) for name in names]

    results = asyncio.run(burst())
    assert all(r is not None for r in results[:-1]) and results[-1] is None
    assert len(asked) == 1


def test_a_topic_created_before_the_request_was_published_is_found():
    existing: set[str] = set()
    topics = replies(existing)
    assert check(topics, "wrp.replies.new") is not None  # asked the broker: not there yet
    existing.add("wrp.replies.new")
    assert asyncio.run(topics.check("wrp.replies.new", time.time())) is None
