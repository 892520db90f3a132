"""The restart drill: traffic, a full stop and start of the embedded stack, traffic again, several
times over the same state directory. Every request must be answered and counted exactly once in
ClickHouse (its table and its rollup), what the learner learned must come back with the versions
it had, and so must the semantic cache's answers."""

from __future__ import annotations

import asyncio
import time
import uuid

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import CACHE, ROUTER_STATE
from pipeline.bus.table import CompactedTable
from pipeline.client import replay, send_feedback, start_producer
from pipeline.drills.observe import settle
from pipeline.envelope import (
    CacheEntry,
    ChatRequest,
    Envelope,
    Feedback,
    RequestSection,
    RouterState,
)
from pipeline.stack import Stack

QUESTIONS = (
    "Explain recursion with a short example.",
    "What is the capital of Australia?",
    "hi there",
    "Write a limerick about a cat.",
)


async def _latest(bootstrap: str, topic: str, model: type) -> dict:
    table = CompactedTable(bootstrap, topic, model)
    await table.start()
    try:
        await table.caught_up()
        return dict(table.values)
    finally:
        await table.stop()


async def _judge(bootstrap: str, answers: dict[str, Envelope]) -> int:
    producer = await start_producer(bootstrap)
    sent = 0
    try:
        for rid, env in answers.items():
            if env.result is not None and env.result.status == "ok":
                await send_feedback(producer, Feedback(request_id=rid, score=1.0, source="drill"))
                sent += 1
    finally:
        await producer.stop()
    return sent


def _counted(stack: Stack, tenant: str) -> tuple[int, int]:
    """(rows in requests, requests in the rollup) for ``tenant``."""
    result = query_analytics(stack.settings, "counted", {"tenant": tenant, "since": "1d"})
    stored, rolled = result["rows"][0]
    return stored or 0, rolled or 0


def _requests(tenant: str, run: str, number: int, count: int) -> list[RequestSection]:
    """Distinct questions, and every third one a repeat the semantic cache may answer."""

    def text(i: int) -> str:
        question = QUESTIONS[i % len(QUESTIONS)]
        return question if i % 3 == 0 else f"{question} ({run} round {number}, {i})"

    return [
        RequestSection(
            tenant=tenant, body=ChatRequest(messages=[{"role": "user", "content": text(i)}])
        )
        for i in range(count)
    ]


def _restart(stack: Stack, restored: dict[str, int]) -> dict[str, int]:
    """Stop and start the stack; what the learner and the cache held before, and got back.
    ``restored`` (arm -> version got back at the last restart) is updated: an arm whose version
    is lower now than then was learned again from scratch."""
    bootstrap = stack.settings.broker
    stack.drain()  # the learner has folded every judgement, analytics has stored every row
    arms = asyncio.run(_latest(bootstrap, ROUTER_STATE, RouterState))
    went_back = sum(
        1 for key, version in restored.items() if key not in arms or arms[key].version < version
    )
    cached = asyncio.run(_latest(bootstrap, CACHE, CacheEntry))
    live = {key for key, entry in cached.items() if entry.expires_at > time.time()}
    stack.stop()
    stack.start()
    arms_back = asyncio.run(_latest(bootstrap, ROUTER_STATE, RouterState))
    cache_back = asyncio.run(_latest(bootstrap, CACHE, CacheEntry))
    restored.clear()
    restored.update({key: state.version for key, state in arms_back.items()})
    return {
        "arms_whose_version_went_back": went_back,
        "arms_before": len(arms),
        "arms_back_at_their_version": sum(
            1 for key, s in arms.items() if key in arms_back and arms_back[key].version == s.version
        ),
        "cached_answers_before": len(live),
        "cached_answers_back": len(live & cache_back.keys()),
    }


def restart_drill(stack: Stack, restarts: int = 3, per_round: int = 30) -> dict:
    """Runs on a started stack and leaves it started."""
    bootstrap = stack.settings.broker
    run = uuid.uuid4().hex[:8]
    tenant = f"restart-{run}"
    answered: set[str] = set()
    rounds = []
    versions: dict[str, int] = {}
    started = time.monotonic()
    for number in range(restarts + 1):
        restored = _restart(stack, versions) if number else {}
        requests = _requests(tenant, run, number, per_round)
        answers = asyncio.run(replay(bootstrap, requests, rate=20, timeout_s=180, label="round"))
        answered |= answers.keys()
        asyncio.run(_judge(bootstrap, answers))
        hits = sum(1 for e in answers.values() if e.decision and e.decision.cache_hit)
        rounds.append(
            {"round": number, "sent": per_round, "answered": len(answers), "cache_hits": hits}
            | restored
        )
    asyncio.run(settle(lambda: _counted(stack, tenant)[1] >= len(answered), timeout_s=60))
    stored, rolled = _counted(stack, tenant)
    sent = per_round * (restarts + 1)
    report = {
        "restarts": restarts,
        "requests": sent,
        "answered": len(answered),
        "lost": sent - len(answered),
        "stored": stored,
        "rolled_up": rolled,
        "counted_twice": max(0, rolled - len(answered), stored - len(answered)),
        "missing_in_clickhouse": max(0, len(answered) - min(stored, rolled)),
        "rounds": rounds,
        "seconds": round(time.monotonic() - started, 1),
    }
    report["passed"] = (
        report["lost"] == 0
        and stored == rolled == len(answered)
        and all(
            r["arms_back_at_their_version"] == r["arms_before"]
            and r["arms_whose_version_went_back"] == 0
            and r["cached_answers_back"] == r["cached_answers_before"]
            for r in rounds[1:]
        )
    )
    return report
