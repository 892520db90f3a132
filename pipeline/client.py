"""Publishing requests and feedback, and awaiting responses: what ``wrp publish|replay|feedback``
and the benchmarks use. Responses are matched by request id; a repeated response (at-least-once)
is counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError

from pipeline.bus.catalog import FEEDBACK, REQUESTS, RESPONSES, STREAM
from pipeline.bus.clients import (
    FETCH_BUSY_MS,
    Consumer,
    FetchPacer,
    Producer,
    new_consumer,
    new_producer,
    started,
)
from pipeline.bus.codec import REQUEST_ID_HEADER, decode, encode
from pipeline.envelope import Envelope, Feedback, RequestSection, StreamChunks, now

#: How long a reply follower's fetch may wait while no reply comes (see FetchPacer).
IDLE_FETCH_MS = 100
#: Once a streamed request's whole answer is in, how long its last stream parts may lag (they
#: travel on another topic).
STREAM_TAIL_S = 2.0

log = logging.getLogger(__name__)


class WorkloadError(ValueError):
    pass


def load_workload(path: Path) -> list[RequestSection]:
    """A JSON-lines file of request sections (``body`` plus optional ids, tenant, session)."""
    requests = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            requests.append(RequestSection.model_validate_json(line))
        except ValidationError as exc:
            raise WorkloadError(
                f"{path}:{number}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from None
    return requests


def request_id_of(record: ConsumerRecord) -> str | None:
    """The request a reply or stream record belongs to, from its header (None without one)."""
    for name, value in record.headers or ():
        if name == REQUEST_ID_HEADER:
            return value.decode("utf-8", "replace")
    return None


class TopicFollower:
    """Follows a topic from its current end and hands each record to :meth:`received`.

    Followers :meth:`carry` others on their consumer: one fetch then serves several topics (on
    the embedded broker each idle consumer costs some 10 CPU-ms a second)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._riders: list[TopicFollower] = []
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None

    def carry(self, other: TopicFollower) -> None:
        """Follow ``other``'s topic on this follower's consumer (call before :meth:`start`; do
        not start ``other``)."""
        self._riders.append(other)

    async def start(self) -> None:
        consumer = self._consumer = new_consumer(self.bootstrap, fetch_max_wait_ms=FETCH_BUSY_MS)
        await started(consumer)
        self._followers = {f.topic: f for f in (self, *self._riders)}
        assigned = [
            TopicPartition(topic, p)
            for topic in self._followers
            for p in sorted(consumer.partitions_for_topic(topic) or {0})
        ]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:  # resolve the end offsets now, before anything is published
            await consumer.position(tp)
        self._task = asyncio.create_task(self._follow(consumer))

    async def _follow(self, consumer: Consumer) -> None:
        pacer = FetchPacer(consumer, FETCH_BUSY_MS, IDLE_FETCH_MS)
        poll_ms = pacer.poll_ms
        while True:
            records = await consumer.getmany(timeout_ms=poll_ms)
            # records nobody waits for do not make the follower hurry
            waiting = any(f.waiting() for f in self._followers.values())
            poll_ms = pacer.polled(sum(len(p) for p in records.values()) if waiting else 0)
            for record in (r for part in records.values() for r in part):
                try:
                    self._followers[record.topic].received(record)
                except Exception:  # one odd record must not stop the following
                    log.exception("follower: record %s@%d skipped", record.topic, record.offset)

    def waiting(self) -> bool:
        """Someone waits for records of this topic (a short fetch wait pays off)."""
        return True

    def received(self, record: ConsumerRecord) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


class ResponseCollector(TopicFollower):
    """Follows a reply topic from its current end and keeps the first response per request id.

    With ``retain=False`` (the gateway) it keeps nothing: only callers of :meth:`response`
    registered before the reply arrives get it, so memory stays bounded by requests in flight,
    and replies for other requests are skipped by their header, undecoded."""

    def __init__(self, bootstrap: str, topic: str = RESPONSES, retain: bool = True) -> None:
        super().__init__(bootstrap, topic)
        self.retain = retain
        self._waiters: dict[str, asyncio.Future[Envelope]] = {}
        self.responses: dict[str, Envelope] = {}
        self.received_at: dict[str, float] = {}
        self.duplicates = 0
        self._arrived = asyncio.Event()

    def waiting(self) -> bool:
        return self.retain or bool(self._waiters)

    def received(self, record: ConsumerRecord) -> None:
        if not self.retain and (rid := request_id_of(record)) and rid not in self._waiters:
            return
        try:
            env = decode(record.value, Envelope)
        except (ValidationError, ValueError):
            return
        rid = env.request.request_id
        waiter = self._waiters.pop(rid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(env)
        if not self.retain:
            return
        if rid in self.responses:
            self.duplicates += 1
            return
        self.responses[rid] = env
        self.received_at[rid] = now()
        self._arrived.set()

    async def wait_for(
        self,
        request_ids: Iterable[str],
        timeout_s: float,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Envelope]:
        """Responses for ``request_ids`` that arrive within ``timeout_s``."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            got = wanted & self.responses.keys()
            if progress:
                progress(len(got))
            remaining = deadline - time.monotonic()
            if len(got) == len(wanted) or remaining <= 0:
                return {rid: self.responses[rid] for rid in got}
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))

    def expect(self, request_id: str) -> asyncio.Future[Envelope]:
        """A future for ``request_id``'s reply; call before publishing the request."""
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = future
        return future

    async def response(
        self, future: asyncio.Future[Envelope], request_id: str, timeout_s: float
    ) -> Envelope | None:
        """The reply :meth:`expect` promised, or None after ``timeout_s``."""
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            self.forget(request_id)

    def forget(self, request_id: str) -> None:
        """Stop waiting for ``request_id``'s reply."""
        self._waiters.pop(request_id, None)


class StreamFollower(TopicFollower):
    """Follows ``wrp.stream`` for the requests someone waits on: each gets the
    :class:`StreamChunks` of its answer, in order, on its own queue."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, STREAM)
        self._queues: dict[str, asyncio.Queue[StreamChunks]] = {}
        self._next: dict[str, int] = {}

    def expect(self, request_id: str) -> asyncio.Queue[StreamChunks]:
        """The queue ``request_id``'s stream will arrive on; call before publishing."""
        self._next[request_id] = 0
        return self._queues.setdefault(request_id, asyncio.Queue())

    def forget(self, request_id: str) -> None:
        self._queues.pop(request_id, None)
        self._next.pop(request_id, None)

    def waiting(self) -> bool:
        return bool(self._queues)

    def received(self, record: ConsumerRecord) -> None:
        rid = request_id_of(record)
        queue = self._queues.get(rid) if rid is not None else None
        if queue is None:
            return
        try:
            part = decode(record.value, StreamChunks)
        except (ValidationError, ValueError):
            return
        if part.request_id != rid or part.seq < self._next[rid]:
            return  # mislabelled, or a repeat (at-least-once): already handed on
        self._next[rid] = part.seq + 1
        queue.put_nowait(part)


async def first_of(
    answer: asyncio.Future[Envelope], stream: asyncio.Queue[StreamChunks], timeout_s: float
) -> StreamChunks | Envelope | None:
    """The next part of a streamed answer, or the whole answer when it comes first (a cached
    answer, a refusal, an error before any token); None after ``timeout_s``."""
    part = asyncio.ensure_future(stream.get())
    done, _ = await asyncio.wait(
        {answer, part}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    if part in done:
        return part.result()
    part.cancel()
    return answer.result() if answer in done else None


async def start_producer(bootstrap: str) -> Producer:
    producer = new_producer(bootstrap, linger_ms=1)
    await started(producer)
    return producer


async def send_request(producer: Producer, request: RequestSection) -> Envelope:
    envelope = Envelope(request=request)
    await producer.send_and_wait(REQUESTS, encode(envelope), key=envelope.key.encode())
    return envelope


async def send_feedback(producer: Producer, feedback: Feedback) -> None:
    await producer.send_and_wait(FEEDBACK, encode(feedback), key=feedback.request_id.encode())


class ProgressBar:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str, width: int = 30) -> None:
        self.total, self.label, self.width = total, label, width
        self.sent = 0
        self.done = 0
        self._last = 0.0

    def update(self, sent: int | None = None, done: int | None = None, force: bool = False) -> None:
        self.sent = self.sent if sent is None else sent
        self.done = self.done if done is None else done
        if not force and time.monotonic() - self._last < 0.2:
            return
        self._last = time.monotonic()
        filled = int(self.width * self.done / max(1, self.total))
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(
            f"\r{self.label} [{bar}] sent {self.sent}/{self.total}, answered {self.done}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        self.update(force=True)
        sys.stderr.write("\n")


async def replay(
    bootstrap: str,
    requests: list[RequestSection],
    rate: float,
    timeout_s: float,
    label: str = "replay",
    received_at: dict[str, float] | None = None,
    schedule: Sequence[float] | None = None,
) -> dict[str, Envelope]:
    """Publish ``requests`` at ``rate`` per second (0 = as fast as possible), or each at its
    ``schedule`` offset (seconds from the start) when given, and await answers.

    ``received_at``, when given, is filled with the arrival time of each answer."""
    if schedule is None:
        schedule = [i / rate if rate > 0 else 0.0 for i in range(len(requests))]
    if len(schedule) != len(requests):
        raise ValueError(f"{len(schedule)} send times for {len(requests)} requests")
    collector = ResponseCollector(bootstrap)
    await collector.start()
    producer = await start_producer(bootstrap)
    bar = ProgressBar(len(requests), label)
    ids = [r.request_id for r in requests]
    wanted = set(ids)
    started = time.monotonic()
    try:
        for i, request in enumerate(requests):
            delay = started + schedule[i] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamped = request.model_copy(update={"created_at": now()})
            await producer.send(
                REQUESTS, encode(Envelope(request=stamped)), key=stamped.key.encode()
            )
            bar.update(sent=i + 1, done=len(wanted & collector.responses.keys()))
        await producer.flush()
        answers = await collector.wait_for(ids, timeout_s, lambda n: bar.update(done=n))
        bar.close()
        if received_at is not None:
            received_at.update({rid: collector.received_at[rid] for rid in answers})
        return answers
    finally:
        await producer.stop()
        await collector.stop()


async def stream_one(
    bootstrap: str, request: RequestSection, timeout_s: float, show: Callable[[str], None]
) -> Envelope | None:
    """Publish one streaming request, hand each piece of text to ``show`` as the pool generates
    it, and return the whole answer (None after ``timeout_s``)."""
    body = request.body
    assert body is not None
    request = request.model_copy(update={"body": body.model_copy(update={"stream": True})})
    collector, streams = ResponseCollector(bootstrap, retain=False), StreamFollower(bootstrap)
    collector.carry(streams)
    await collector.start()
    producer = await start_producer(bootstrap)
    try:
        answer = collector.expect(request.request_id)
        parts = streams.expect(request.request_id)
        await send_request(producer, request)
        deadline = time.monotonic() + timeout_s
        streamed = finished = False
        while not finished and (remaining := deadline - time.monotonic()) > 0:
            if not parts.empty():
                part = parts.get_nowait()
            elif answer.done():
                if not streamed:
                    break  # answered whole: cached, refused, or failed before any token
                try:  # the rest of a begun stream is already on its way
                    part = await asyncio.wait_for(parts.get(), min(remaining, STREAM_TAIL_S))
                except TimeoutError:
                    break
            else:
                first = await first_of(answer, parts, remaining)
                if not isinstance(first, StreamChunks):
                    continue
                part = first
            streamed, finished = True, part.done
            for chunk in part.chunks:
                for choice in chunk.get("choices") or []:
                    show((choice.get("delta") or {}).get("content") or "")
        return await collector.response(answer, request.request_id, deadline - time.monotonic())
    finally:
        await producer.stop()
        await collector.stop()


def response_text(env: Envelope) -> str:
    """What a user would see: the answer, the refusal, or the error."""
    result = env.result
    if result is None:
        return "(no result)"
    if result.error is not None:
        return f"error {result.error.type} at {result.error.stage}: {result.error.message}"
    choices = (result.response or {}).get("choices") or [{}]
    return str(choices[0].get("message", {}).get("content", json.dumps(result.response)))
