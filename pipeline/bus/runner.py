"""The stage runner: at-least-once batch processing on aiokafka.

Checkpoint order for one batch, the only place it is written down:

1. consume up to ``batch_max`` records (waiting at most ``batch_wait_ms``); a stage that sets
   :meth:`Stage.batch_limits` with a linger (the analytics sink) keeps consuming until it has
   that many records or the linger since the first record passed; a fetch that skips offsets
   is cut at the gap and the partition fetched again from there (:mod:`pipeline.bus.gaps`);
2. decode and validate each record; a record that is too large, not JSON, not the topic's schema,
   past its hop budget (``WRP_MAX_HOPS``), addressed to a reply topic outside the allow-list
   (:mod:`pipeline.bus.replies`), missing a section the stage needs or already carrying one the
   stage adds becomes a dead letter on ``wrp.dlq`` (:mod:`pipeline.bus.dead_letters`), and an
   error reply when the request id can be read (on ``wrp.responses`` if its reply_to is refused);
3. call the stage's ``process`` with the valid records; a record the stage rejects becomes a dead
   letter the same way; an exception from ``process`` (ClickHouse down, say) fails the whole
   batch: nothing is produced, the runner pauses its partitions, keeps the batch and retries it
   with backoff (0.1 s doubling to 10 s) until it succeeds, the stage is told to stop (the batch
   is then replayed after restart) or its partitions move to another member (which replays them);
4. produce every output (in input order, keyed, so per-key order holds) and await every
   acknowledgement;
5. commit the offsets after the batch.

A crash anywhere before 5 replays the batch: outputs may repeat and every consumer is idempotent
by ``request_id``. SIGTERM stops fetching, lets the in-flight batch finish 1-5, then exits.

A stage with ``concurrency`` > 0 (dispatch: calls take seconds, and one slow call must not hold
up the others) runs steps 2-4 per record, up to ``concurrency`` records at once, and commits each
partition's offset up to its oldest unfinished record (:class:`OffsetProgress`), at most every
``batch_wait_ms``. While ``concurrency`` records are in flight or the stage says it is not
``accepting`` (every endpoint of a pool full), the runner pauses its partitions: backpressure
stays in Kafka, not in memory. A record whose processing raises is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from pipeline.bus.catalog import DLQ, RESPONSES, STAGE_HEALTH, load_catalog
from pipeline.bus.clients import broker_topics, new_consumer, new_producer
from pipeline.bus.codec import decode, encode
from pipeline.bus.dead_letters import dead_letter, readable_request
from pipeline.bus.gaps import OffsetGaps
from pipeline.bus.health import StageMetrics, health_app, serve_http
from pipeline.bus.liveness import HEARTBEAT_S, heartbeat, instance_id
from pipeline.bus.replies import ReplyTopics
from pipeline.envelope import Contract, Envelope, ErrorInfo, Result
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: A lingering batch stops growing at this many bytes of records, whatever its record count:
#: a batch held while its sink is down stays this small.
BATCH_BYTES = 64 * 1024 * 1024

#: Producers accept messages up to this many times ``max_request_bytes`` (a dead letter holds a
#: whole oversize message in base64), and so does a consumer of ``wrp.dlq``.
DLQ_SIZE_FACTOR = 4


@dataclass(frozen=True)
class Inbound:
    """One consumed record and its validated payload."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    message: Contract
    timestamp: int | None = None  # the record's Kafka timestamp, ms


@dataclass(frozen=True)
class Outbound:
    """One record to produce."""

    topic: str
    key: str | None
    message: BaseModel


class MissingTopics(RuntimeError):
    """The broker lacks catalog topics; stages never create them."""


class Rejection(Exception):
    """Raised by a stage for one record it cannot process; the record goes to ``wrp.dlq``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class Stage(ABC):
    """A stage: which topics it reads, which envelope sections it needs, how it processes."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    #: envelope sections that must be present, and sections that must not be (the ones this
    #: stage or a later one adds: an answered envelope never re-enters the request path)
    requires: ClassVar[tuple[str, ...]] = ()
    refuses: ClassVar[tuple[str, ...]] = ()
    #: True for the stages that carry requests toward their answer: they check hops, reply
    #: topics and sections, and answer what they reject. False for a sink of finished envelopes
    #: (analytics): it only records, and never answers (an answer would come back to it).
    request_path: ClassVar[bool] = True
    #: Set by the :class:`StageRunner` that runs the stage.
    metrics: StageMetrics

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models, open clients; called once before consuming."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` opened; called once after the last commit."""

    def add_routes(self, app: FastAPI) -> None:  # noqa: B027 - optional hook
        """Extra HTTP routes on the stage's health port (e.g. analytics queries)."""

    #: 0: whole batches at a time; N > 0: up to N records in flight, each on its own.
    concurrency: ClassVar[int] = 0

    def batch_limits(self) -> tuple[int, int]:
        """(records per batch, linger in ms): with a linger > 0 the runner keeps consuming
        until the batch is full or the linger since its first record passed; 0 takes what one
        fetch returns (lowest latency)."""
        return self.settings.batch_max, self.settings.batch_linger_ms

    def accepting(self) -> bool:
        """False pauses consumption until it turns True again (concurrent stages)."""
        return True

    @abstractmethod
    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        """Outputs for a batch of valid records, in input order; raise to retry the batch."""


@dataclass(frozen=True)
class Rejected:
    """A record the stage rejected, returned from :meth:`Stage.process` in its place."""

    inbound: Inbound
    error: Rejection


def error_reply(
    envelope: Envelope, stage: str, error_type: str, message: str, topic: str | None = None
) -> Outbound:
    """The envelope, closed with an error result, addressed to ``topic`` (default: its
    ``reply_to``, which the runner checked when the envelope came in)."""
    closed = envelope.model_copy(
        update={
            "result": Result(
                status="error",
                error=ErrorInfo(type=error_type, message=message, stage=stage),
                stage=stage,
            )
        }
    )
    return Outbound(topic or envelope.request.reply_to, envelope.key, closed)


def recorded(outputs: list[Outbound]) -> list[Outbound]:
    """``outputs``, and a copy on ``wrp.responses`` of every answer sent to another reply topic:
    that topic is the record of every answer, which the analytics sink stores."""
    copies = [
        Outbound(RESPONSES, out.key, out.message)
        for out in outputs
        if out.topic != RESPONSES
        and isinstance(out.message, Envelope)
        and out.message.result is not None
    ]
    return [*outputs, *copies] if copies else outputs


def _seconds(timestamp_ms: int | None) -> float | None:
    return None if timestamp_ms is None or timestamp_ms < 0 else timestamp_ms / 1000


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class OffsetProgress:
    """Per partition: offsets in flight and the highest started, for commits below the oldest
    unfinished record."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, set[int]] = {}
        self.highest: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, set()).add(offset)
        self.highest[tp] = max(self.highest.get(tp, -1), offset)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        self.pending[tp].discard(offset)

    def committable(self, assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Offsets to commit now: changed ones of assigned partitions."""
        offsets = {}
        for tp, highest in self.highest.items():
            pending = self.pending.get(tp)
            offset = min(pending) if pending else highest + 1
            if tp in assigned and offset != self.committed.get(tp):
                offsets[tp] = offset
        return offsets


class StageRunner:
    """Runs one :class:`Stage` against Kafka with at-least-once semantics."""

    def __init__(self, stage: Stage, settings: Settings, port: int | None = None) -> None:
        self.stage = stage
        self.settings = settings
        self.port = settings.stage_port(stage.name) if port is None else port
        self.metrics = StageMetrics(stage.name)
        stage.metrics = self.metrics
        self.status: dict[str, object] = {"state": "starting"}
        self._stopping = asyncio.Event()
        catalog = load_catalog()
        self._payloads = {t: catalog.get(t).payload_model for t in stage.topics}
        self._gaps = OffsetGaps(
            frozenset(t for t in stage.topics if catalog.get(t).cleanup_policy == "delete")
        )
        self._catalog = catalog
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._replies: ReplyTopics | None = None
        self._instance = instance_id()

    def request_stop(self) -> None:
        """Finish the in-flight batch, commit, and exit (what SIGTERM does)."""
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self.request_stop)
        app = health_app(self.stage.name, self.metrics, self.status)
        self.stage.add_routes(app)
        http_task, http_server = await serve_http(app, self.port, self.settings.http_host)
        heartbeats: asyncio.Task[None] | None = None
        try:
            self._producer = new_producer(
                self.settings.broker,
                linger_ms=1,
                max_request_size=DLQ_SIZE_FACTOR * self.settings.max_request_bytes,
            )
            await self._producer.start()
            await self._check_topics()
            await self.stage.start()
            self._consumer = new_consumer(
                self.settings.broker,
                *self.stage.topics,
                group_id=f"wrp-{self.stage.name}",
                auto_offset_reset="earliest",
                fetch_max_wait_ms=5,
                session_timeout_ms=10000,
                heartbeat_interval_ms=1000,
                rebalance_timeout_ms=10000,
                max_partition_fetch_bytes=DLQ_SIZE_FACTOR * self.settings.max_request_bytes,
            )
            await self._consumer.start()
            self.status["state"] = "running"
            log.info("stage %s consuming %s", self.stage.name, ", ".join(self.stage.topics))
            heartbeats = asyncio.create_task(self._beat())
            await self._consume_loop()
        finally:
            self.status["state"] = "stopping"
            if heartbeats is not None:
                heartbeats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeats
                with contextlib.suppress(KafkaError):  # the readiness check then goes by age
                    await self._send_heartbeat("stopping")
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                await self._producer.stop()
            await self.stage.stop()
            http_server.should_exit = True
            await http_task

    async def _beat(self) -> None:
        """Say on ``wrp.stage-health`` that this process runs (or is paused), every few seconds."""
        while True:
            state = "paused" if self.status.get("paused") else "running"
            try:
                await self._send_heartbeat(state)
            except KafkaError as exc:  # the next beat retries; the gateway sees a gap meanwhile
                log.warning("stage %s: heartbeat failed: %r", self.stage.name, exc)
            await asyncio.sleep(HEARTBEAT_S)

    def _set_paused(self, paused: bool) -> None:
        self.status["paused"] = paused
        self.metrics.paused.set(int(paused))

    async def _send_heartbeat(self, state: str) -> None:
        assert self._producer is not None
        health = heartbeat(self.stage.name, self.stage.name.split("+"), state, self._instance)
        await self._producer.send_and_wait(STAGE_HEALTH, encode(health), key=health.key.encode())

    async def _check_topics(self) -> None:
        """Every catalog topic exists (a stage produces to several and creates none), and reply
        topics can be checked against the broker."""
        assert self._producer is not None
        producer = self._producer
        found = await broker_topics(producer)
        missing = sorted({t.name for t in self._catalog.topics} - found)
        if missing:
            raise MissingTopics(
                f"topic(s) {', '.join(missing)} do not exist on {self.settings.broker}: "
                "create them with `wrp topics create` (stages never create topics)"
            )
        self._replies = ReplyTopics(
            self._catalog, self.settings.reply_topic_prefix, lambda: broker_topics(producer)
        )

    async def _consume_loop(self) -> None:
        assert self._consumer is not None
        if self.stage.concurrency:
            await self._consume_concurrently()
            return
        while not self._stopping.is_set():
            self.status["partitions"] = len(self._consumer.assignment())
            batch = await self._collect()
            if batch:
                await self._run_until_done(batch)

    async def _collect(self) -> list:
        """One batch: what one fetch returns, or, with a linger, up to the size limit."""
        consumer = self._consumer
        assert consumer is not None
        max_records, linger_ms = self.stage.batch_limits()
        batch: list = []
        size = 0
        deadline: float | None = None
        while not self._stopping.is_set() and len(batch) < max_records and size < BATCH_BYTES:
            wait_ms = self.settings.batch_wait_ms
            if deadline is not None:
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    break
            records = self._guarded(
                await consumer.getmany(timeout_ms=wait_ms, max_records=max_records - len(batch))
            )
            for part in records.values():
                batch.extend(part)
                size += sum(len(r.value or b"") for r in part)
            if records:
                self._update_lag(records)
            if not batch or linger_ms <= 0:
                break  # nothing yet, or no linger: back to the loop (stop flag, status)
            if batch and deadline is None:
                deadline = time.monotonic() + linger_ms / 1000
        return batch

    async def _run_until_done(self, batch: list) -> None:
        """Process, produce and commit ``batch``; on failure pause, back off and retry."""
        consumer = self._consumer
        assert consumer is not None
        backoff, paused = 0.1, False
        while True:
            started = time.perf_counter()
            try:
                await self._run_batch(batch)
                break
            except Exception:
                self.metrics.failed.inc()
                log.exception(
                    "stage %s: batch of %d failed; consumption paused, retrying in %.1fs",
                    self.stage.name,
                    len(batch),
                    backoff,
                )
                if not paused:
                    paused = True
                    self.metrics.pauses.inc()
                    self._set_paused(True)
                if not await self._wait_paused(backoff):
                    return  # stopping: not committed, replayed after restart
                assigned = consumer.assignment()
                batch = [r for r in batch if TopicPartition(r.topic, r.partition) in assigned]
                if not batch:
                    break  # the partitions moved; their new owner replays them
                backoff = min(backoff * 2, 10.0)
        if paused:
            consumer.resume(*consumer.assignment())
            self._set_paused(False)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.processed.inc(len(batch))

    async def _wait_paused(self, seconds: float) -> bool:
        """Wait with every partition paused, still polling so the group keeps this member;
        False when the stage is told to stop meanwhile."""
        consumer = self._consumer
        assert consumer is not None
        until = time.monotonic() + seconds
        while not self._stopping.is_set():
            consumer.pause(*consumer.assignment())
            left = until - time.monotonic()
            if left <= 0:
                return True
            fetched = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for tp, part in fetched.items():  # newly assigned while paused: fetch again later
                consumer.seek(tp, part[0].offset)
        return False

    async def _consume_concurrently(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        progress = OffsetProgress()
        tasks: set[asyncio.Task[None]] = set()
        while not self._stopping.is_set():
            self.status["partitions"] = len(consumer.assignment())
            room = self.stage.concurrency - len(tasks)
            if room > 0 and self.stage.accepting():
                if consumer.paused():
                    consumer.resume(*consumer.paused())
                    self._set_paused(False)
            else:
                if not consumer.paused():
                    self.metrics.pauses.inc()
                consumer.pause(*consumer.assignment())
                self._set_paused(True)
            records = self._guarded(
                await consumer.getmany(
                    timeout_ms=self.settings.batch_wait_ms, max_records=max(1, room)
                )
            )
            for tp, part in records.items():
                for record in part:
                    progress.start(tp, record.offset)
                    task = asyncio.create_task(self._run_record(tp, record, progress))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            self.metrics.in_flight.set(len(tasks))
            if records:
                self._update_lag(records)
            await self._commit_progress(progress)
        if tasks:
            await asyncio.gather(*tasks)
        await self._commit_progress(progress)

    async def _run_record(self, tp: TopicPartition, record, progress: OffsetProgress) -> None:
        started = time.perf_counter()
        backoff = 0.1
        while True:
            try:
                await self._produce(await self._outputs([record]))
                break
            except Exception:
                self.metrics.failed.inc()
                log.exception(
                    "stage %s: record %s[%d]@%d failed, retrying in %.1fs",
                    self.stage.name,
                    tp.topic,
                    tp.partition,
                    record.offset,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        progress.finish(tp, record.offset)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.processed.inc()

    async def _commit_progress(self, progress: OffsetProgress) -> None:
        assert self._consumer is not None
        offsets = progress.committable(self._consumer.assignment())
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
            progress.committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning(
                "stage %s: commit failed (%s); records may be replayed", self.stage.name, exc
            )

    async def _run_batch(self, batch: list) -> None:
        await self._produce(await self._outputs(batch))
        await self._commit(batch)

    async def _outputs(self, batch: list) -> list[Outbound]:
        valid: list[Inbound] = []
        outputs: list[Outbound] = []
        for record in batch:
            item = await self._validate(record)
            if isinstance(item, Inbound):
                valid.append(item)
            else:
                outputs.extend(item)
        if valid:
            for out in await self.stage.process(valid):
                if isinstance(out, Rejected):
                    outputs.extend(self._dead_letter_inbound(out))
                else:
                    outputs.append(out)
        return recorded(outputs)

    async def _validate(self, record) -> Inbound | list[Outbound]:
        raw: bytes = record.value or b""
        # a dead letter carries a whole oversize message, base64: allow what producers may send
        limit = self.settings.max_request_bytes * (DLQ_SIZE_FACTOR if record.topic == DLQ else 1)
        if len(raw) > limit:
            return await self._dead_letter(
                record,
                "oversize",
                f"message is {len(raw):,} bytes; the limit is {limit:,} (WRP_MAX_REQUEST_BYTES)",
            )
        try:
            message = decode(record.value, self._payloads[record.topic])
        except ValidationError as exc:
            kind = "invalid_json" if exc.errors()[0]["type"] == "json_invalid" else "invalid_schema"
            return await self._dead_letter(record, kind, describe_validation_error(exc))
        except ValueError as exc:
            return await self._dead_letter(record, "invalid_message", str(exc))
        inbound = Inbound(
            record.topic, record.partition, record.offset, raw, message, record.timestamp
        )
        if isinstance(message, Envelope) and self.stage.request_path:
            refused = await self._refusal(message, record.timestamp)
            if refused is not None:
                kind, text, reply_topic = refused
                return self._dead_letter_inbound(
                    Rejected(inbound, Rejection(kind, text)), reply_topic
                )
        return inbound

    async def _refusal(
        self, envelope: Envelope, timestamp_ms: int | None
    ) -> tuple[str, str, str | None] | None:
        """(error type, message, topic for the error reply) when this stage must not process
        ``envelope`` (its record stamped ``timestamp_ms``); None when it may. The reply topic is
        checked first: every later refusal is answered on it."""
        request = envelope.request
        assert self._replies is not None
        refused = await self._replies.check(request.reply_to, _seconds(timestamp_ms))
        if refused is not None:
            return "invalid_reply_to", refused, RESPONSES
        if request.hops > self.settings.max_hops:
            return (
                "hop_limit_exceeded",
                f"the request passed {request.hops} stages, more than WRP_MAX_HOPS "
                f"({self.settings.max_hops}): it is looping",
                None,
            )
        if missing := envelope.missing(*self.stage.requires):
            return (
                "missing_section",
                f"stage {self.stage.name} needs section(s) {', '.join(missing)}; "
                "publish requests to wrp.requests, not to an inner topic",
                None,
            )
        present = [name for name in self.stage.refuses if getattr(envelope, name) is not None]
        if present:
            return (
                "unexpected_section",
                f"stage {self.stage.name} got an envelope that already has section(s) "
                f"{', '.join(present)}: publish a new request with only its request section",
                None,
            )
        return None

    def _dead_letter_inbound(
        self, rejected: Rejected, reply_topic: str | None = None
    ) -> list[Outbound]:
        inbound, error = rejected.inbound, rejected.error
        letter = self._letter(inbound, error.error_type, str(error), inbound.message)
        outputs = [Outbound(DLQ, letter.request_id, letter)]
        if isinstance(inbound.message, Envelope) and self.stage.request_path:
            outputs.append(
                error_reply(
                    inbound.message, self.stage.name, error.error_type, str(error), reply_topic
                )
            )
        return outputs

    async def _dead_letter(self, record, error_type: str, error: str) -> list[Outbound]:
        """A DLQ record for a record that did not validate and, if its request can be read, an
        error reply; nothing for a record read from ``wrp.dlq`` itself (a loop would grow it
        without end)."""
        if record.topic == DLQ:
            self.metrics.dead_lettered.labels(reason=error_type).inc()
            log.error(
                "stage %s: unreadable dead letter at %s[%d]@%d skipped (%s)",
                self.stage.name,
                record.topic,
                record.partition,
                record.offset,
                error_type,
            )
            return []
        request = readable_request(record.value or b"")
        letter = self._letter(record, error_type, error, request)
        outputs = [Outbound(DLQ, letter.request_id, letter)]
        if request is not None and self.stage.request_path:
            assert self._replies is not None
            published = _seconds(record.timestamp)
            refused = await self._replies.check(request.reply_to, published)
            topic = None if refused is None else RESPONSES
            outputs.append(
                error_reply(Envelope(request=request), self.stage.name, error_type, error, topic)
            )
        return outputs

    def _letter(self, record, error_type: str, error: str, source: object):
        """The dead letter of ``record`` (logged and counted); ``source`` is what could be read
        of it (an envelope or a request section), for the request id."""
        request = getattr(source, "request", source)
        letter = dead_letter(
            self.stage.name, record, error_type, error, getattr(request, "request_id", None)
        )
        self.metrics.dead_lettered.labels(reason=error_type).inc()
        log.warning(
            "stage %s: %s at %s[%d]@%d -> wrp.dlq: %s",
            self.stage.name,
            error_type,
            record.topic,
            record.partition,
            record.offset,
            letter.error,
        )
        return letter

    async def _produce(self, outputs: list[Outbound]) -> None:
        assert self._producer is not None
        pending = []
        for out in outputs:
            key = out.key.encode() if out.key is not None else None
            pending.append(await self._producer.send(out.topic, encode(out.message), key=key))
        if pending:
            await asyncio.gather(*pending)

    async def _commit(self, batch: list) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # partitions moved to another member: it replays from the last commit (at-least-once)
            log.warning(
                "stage %s: commit failed (%s); the batch may be replayed", self.stage.name, exc
            )

    def _guarded(self, records: dict) -> dict:
        """``records`` minus what follows an offset gap, whose partition is fetched again."""
        assert self._consumer is not None
        kept, gaps = self._gaps.check(self._consumer.assignment(), records)
        for gap in gaps:
            self.metrics.offset_gaps.labels(topic=gap.tp.topic).inc()
            where = f"{gap.tp.topic}[{gap.tp.partition}]"
            if gap.rewind:
                log.error(
                    "stage %s: fetched %s@%d while expecting @%d; fetching again from @%d",
                    self.stage.name,
                    where,
                    gap.found,
                    gap.expected,
                    gap.expected,
                )
                self._consumer.seek(gap.tp, gap.expected)
            else:
                log.error(
                    "stage %s: %s offsets %d-%d are not on the broker; continuing after them",
                    self.stage.name,
                    where,
                    gap.expected,
                    gap.found - 1,
                )
        return kept

    def _update_lag(self, records: dict) -> None:
        assert self._consumer is not None
        for tp, part in records.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                behind = max(0, high - (part[-1].offset + 1))
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)
