"""The fuzz drill: generated and mutated records published straight onto ``wrp.requests``
(:mod:`pipeline.drills.fuzz_records`), then accounted for one by one.

Each record is found either as a dead letter naming its partition and offset (and then, when the
letter could read its request id, with an error reply for that id), or as an answer on
``wrp.responses`` for the request id it carries. It also checks that ``wrp.requests`` grew by
exactly what was sent (nothing looped back), that no stage process restarted,
and that ClickHouse stored each answered request and each dead letter once, its rollup too.
Topics are at-least-once: a batch retried after a broker error repeats its outputs there
(counted, not failed); the store must hold each once all the same.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

from aiokafka.admin import NewTopic
from pydantic import ValidationError

from pipeline.bus.admin import create_new_topics
from pipeline.bus.admission import DLQ_SIZE_FACTOR
from pipeline.bus.catalog import DLQ, REQUESTS
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import decode
from pipeline.bus.lag import topic_end_offsets
from pipeline.client import ProgressBar, ResponseCollector
from pipeline.drills.fuzz_records import REPLY_TOPIC, FuzzRecord, fuzz_records
from pipeline.drills.observe import (
    Tail,
    batch_failures,
    delta,
    quiet_totals,
    settle,
    stage_pids,
    totals,
)
from pipeline.envelope import DeadLetter, Envelope
from pipeline.stack import Stack


def request_id_of(record: FuzzRecord, limit: int) -> str | None:
    """The request id the pipeline must answer, when the record is a valid envelope."""
    if len(record.raw) > limit:
        return None
    try:
        return Envelope.model_validate_json(record.raw).request.request_id
    except (ValidationError, ValueError):
        return None


async def publish(bootstrap: str, records: list[FuzzRecord], limit: int) -> list[tuple[int, int]]:
    """Send every record; the (partition, offset) each got."""
    producer = new_producer(bootstrap, linger_ms=5, max_request_size=DLQ_SIZE_FACTOR * limit)
    await producer.start()
    try:
        pending = [
            await producer.send(REQUESTS, r.raw, key=f"fuzz-{i}".encode())
            for i, r in enumerate(records)
        ]
        sent = await asyncio.gather(*pending)
        return [(m.partition, m.offset) for m in sent]
    finally:
        await producer.stop()


async def fuzz_drill(stack: Stack, count: int, seed: int = 0, timeout_s: float | None = None):
    settings = stack.settings
    bootstrap, limit = settings.broker, settings.max_request_bytes
    run = uuid.uuid4().hex[:8]
    records = fuzz_records(count, seed, run, limit)
    await create_new_topics(bootstrap, [NewTopic(REPLY_TOPIC, 1, 1)])
    requests_before = await topic_end_offsets(bootstrap, REQUESTS)
    dlq_before = await topic_end_offsets(bootstrap, DLQ)
    pids, failures = stage_pids(stack), batch_failures(stack)
    stored_before = await quiet_totals(stack)
    started = time.monotonic()
    collector = ResponseCollector(bootstrap)
    await collector.start()
    try:
        async with Tail(bootstrap, DLQ, dlq_before) as dlq:
            placed = await publish(bootstrap, records, limit)
            expected = [request_id_of(r, limit) for r in records]
            letters: dict[tuple[int, int], DeadLetter] = {}  # of wrp.requests records
            every_letter: list[DeadLetter] = []
            bar = ProgressBar(count, "fuzz")
            bar.update(sent=count)

            async def unaccounted() -> list[int]:
                for record in await dlq.read():
                    letter = decode(record.value, DeadLetter)
                    every_letter.append(letter)
                    if letter.topic == REQUESTS:
                        letters[(letter.partition, letter.offset)] = letter
                missing = [
                    i
                    for i, where in enumerate(placed)
                    if where not in letters and expected[i] not in collector.responses
                ]
                bar.update(done=count - len(missing))
                return missing

            deadline = time.monotonic() + (timeout_s or 120 + count * 0.1)
            missing = await unaccounted()
            while missing and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                missing = await unaccounted()
            bar.close()
    finally:
        await collector.stop()
    readable = [d for d in letters.values() if d.request_id]
    unreplied = [d.request_id for d in readable if d.request_id not in collector.responses]
    answered = {
        rid for rid, where in zip(expected, placed, strict=True) if rid and where not in letters
    }
    answered |= {d.request_id for d in readable}
    # at-least-once: a batch retried after a broker error repeats its letters on the topic
    distinct_letters = {
        (d.stage, d.topic, d.partition, d.offset, d.record_timestamp) for d in every_letter
    }
    requests_after = await topic_end_offsets(bootstrap, REQUESTS)
    growth = sum(requests_after.values()) - sum(requests_before.values())

    def stored() -> dict[str, int]:
        return delta(totals(stack), stored_before)

    await settle(
        lambda: (
            stored()["requests"] >= len(answered)
            and stored()["dead_letters"] >= len(distinct_letters)
        ),
        timeout_s=60,
    )
    in_store = stored()
    restarted = sorted(name for name, pid in pids.items() if stage_pids(stack).get(name) != pid)
    report = {
        "records": count,
        "seed": seed,
        "kinds": dict(sorted(Counter(r.kind for r in records).items())),
        "answered_requests": len(answered),
        "dead_lettered": len(letters),
        "dead_letters_with_readable_id": len(readable),
        "lost": len(missing),
        "lost_examples": [records[i].raw[:120].decode("utf-8", "replace") for i in missing[:5]],
        "readable_dead_letters_without_error_reply": len(unreplied),
        "requests_topic_growth": growth,
        "stage_restarts": restarted,
        "batch_retries": batch_failures(stack) - failures,
        "answers_repeated_on_the_topic": collector.duplicates,
        "dead_letters_repeated_on_the_topic": len(every_letter) - len(distinct_letters),
        "stored_requests": in_store["requests"],
        "stored_requests_rolled_up": in_store["rolled_up"],
        "stored_dead_letters": in_store["dead_letters"],
        "dead_letters_on_the_topic": len(distinct_letters),
        "seconds": round(time.monotonic() - started, 1),
    }
    report["counted_twice"] = max(0, report["stored_requests_rolled_up"] - len(answered))
    report["passed"] = (
        report["lost"] == 0
        and not unreplied
        and growth == count
        and not restarted
        and report["stored_requests"] == len(answered)
        and report["stored_requests_rolled_up"] == len(answered)
        and report["stored_dead_letters"] == len(distinct_letters)
    )
    return report
