"""The stage runner: at-least-once processing on aiokafka, one loop for every stage.

The checkpoint steps, labelled where they happen in :class:`StageRunner`:

1. fetch: up to the room left (``batch_max``, less the records whose pending work is in flight),
   waiting as long as the :class:`~pipeline.bus.clients.FetchPacer` allows; a stage with a
   linger (the analytics sink) keeps fetching until its batch is full or the linger passed; a
   fetch that skips offsets is cut at the gap and the partition fetched again
   (:mod:`pipeline.bus.gaps`). Every record fetched is now in flight (:mod:`pipeline.bus.offsets`);
2. admit: decode and validate each record (:mod:`pipeline.bus.admission`); what is refused
   becomes a dead letter and, when its request id can be read, an error reply;
3. process: the stage's ``process`` turns the admitted records into outputs, rejections (dead
   letters too) and :class:`~pipeline.bus.stage.Pending` work for single records (pool calls).
   An exception fails the whole batch: nothing is produced, consumption pauses, and the batch is
   retried with backoff (0.1 s doubling to 10 s) until it succeeds, the stage is told to stop
   (it is then replayed after a restart) or its partitions move to another member (which replays
   them);
4. produce: every immediate output, in input order and keyed (per-key order holds), awaiting
   every acknowledgement; the batch's records without pending work are then done. Each pending
   runs on its own: when it raises it is retried with backoff, and after
   :data:`PENDING_ATTEMPTS` failures its record is dead-lettered with an error reply instead;
   its outputs are produced (retried until acknowledged, never recomputed), then its record is
   done. While ``concurrency`` records are pending or the stage is not ``accepting``, the
   partitions are paused: backpressure stays in Kafka, not in memory;
5. commit: each partition's offset up to its oldest record not yet done, every
   ``WRP_COMMIT_INTERVAL_MS``, when partitions are revoked, and when the stage stops.

A crash anywhere before 5 replays those records: outputs may repeat and every consumer is
idempotent by ``request_id``. SIGTERM stops fetching, lets the batch and the pending work finish
(what is still retrying is left undone, so it is replayed after a restart), commits what is
done, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from pipeline.bus.admission import DLQ_SIZE_FACTOR, Admission
from pipeline.bus.catalog import STAGE_HEALTH, load_catalog
from pipeline.bus.clients import FetchPacer, broker_topics, new_consumer, new_producer
from pipeline.bus.codec import REQUEST_ID_HEADER, encode
from pipeline.bus.gaps import OffsetGaps
from pipeline.bus.health import StageMetrics, health_app
from pipeline.bus.liveness import HEARTBEAT_S, heartbeat, instance_id
from pipeline.bus.offsets import CommitSchedule, OffsetProgress
from pipeline.bus.replies import ReplyTopics
from pipeline.bus.stage import (
    Outbound,
    Output,
    Pending,
    Rejected,
    Rejection,
    Stage,
    recorded,
)
from pipeline.envelope import Envelope
from pipeline.http_server import serve_http
from pipeline.settings import Settings
from pipeline.tracing import TRACEPARENT_HEADER, request_id_of, request_id_var, tracing_for

log = logging.getLogger(__name__)

#: A lingering batch stops growing at this many bytes of records, whatever its record count:
#: a batch held while its sink is down stays this small.
BATCH_BYTES = 64 * 1024 * 1024
#: Pending work that raised this many times is given up on: its record is dead-lettered.
PENDING_ATTEMPTS = 5


class MissingTopics(RuntimeError):
    """The broker lacks catalog topics; stages never create them."""


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Commits what is done on partitions before they move to another member."""

    def __init__(self, runner: StageRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runner._commit(set(revoked))
        self.runner._progress.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


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
        self._catalog = catalog
        self._payloads = {t: catalog.get(t).payload_model for t in stage.topics}
        self._gaps = OffsetGaps(
            frozenset(t for t in stage.topics if catalog.get(t).cleanup_policy == "delete")
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._admission: Admission
        self._pacer: FetchPacer
        self._poll_ms = settings.batch_wait_ms
        self._progress = OffsetProgress()
        self._commits = CommitSchedule(settings.commit_interval_ms)
        self._pending: set[asyncio.Task[None]] = set()
        self._instance = instance_id()
        self._tracing = tracing_for(settings, stage.name)

    def request_stop(self) -> None:
        """Finish the in-flight work, commit, and exit (what SIGTERM does)."""
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
        started = False
        try:
            self._producer = new_producer(
                self.settings.broker,
                linger_ms=1,
                max_request_size=DLQ_SIZE_FACTOR * self.settings.max_request_bytes,
            )
            await self._producer.start()
            await self._check_topics()
            await self.stage.start()
            started = True
            self._consumer = new_consumer(
                self.settings.broker,
                group_id=f"wrp-{self.stage.name}",
                auto_offset_reset="earliest",
                fetch_max_wait_ms=self.stage.fetch_busy_ms,
                fetch_min_bytes=self.stage.fetch_min_bytes,
                session_timeout_ms=10000,
                heartbeat_interval_ms=1000,
                rebalance_timeout_ms=10000,
                max_partition_fetch_bytes=DLQ_SIZE_FACTOR * self.settings.max_request_bytes,
            )
            self._consumer.subscribe(list(self.stage.topics), listener=_CommitOnRevoke(self))
            await self._consumer.start()
            self._pacer = FetchPacer(
                self._consumer,
                self.stage.fetch_busy_ms,
                self.stage.fetch_idle_ms or self.settings.fetch_idle_ms,
                self.settings.batch_wait_ms,
            )
            self.status["state"] = "running"
            log.info("stage %s consuming %s", self.stage.name, ", ".join(self.stage.topics))
            heartbeats = asyncio.create_task(self._beat())
            await self._loop()
        finally:
            self.status["state"] = "stopping"
            for task in self._pending:  # only after a failure: a clean stop waited for them
                task.cancel()
            await asyncio.gather(*self._pending, return_exceptions=True)
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
            if started:
                await self.stage.stop()
            self._tracing.shutdown()
            http_server.should_exit = True
            await http_task

    async def _check_topics(self) -> None:
        """Every catalog topic exists (a stage produces to several and creates none); reply
        topics are then checked against the broker as requests name them."""
        assert self._producer is not None
        producer = self._producer
        missing = sorted({t.name for t in self._catalog.topics} - await broker_topics(producer))
        if missing:
            raise MissingTopics(
                f"topic(s) {', '.join(missing)} do not exist on {self.settings.broker}: "
                "create them with `wrp topics create` (stages never create topics)"
            )
        replies = ReplyTopics(
            self._catalog, self.settings.reply_topic_prefix, lambda: broker_topics(producer)
        )
        self._admission = Admission(
            self.stage, self.settings, self.metrics, self._payloads, replies
        )

    async def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            self.status["partitions"] = len(consumer.assignment())
            room = self._make_room()
            # Step 1: fetch
            batch = await self._collect(room)
            if batch:
                # Steps 2-4, retried as one while the stage fails
                await self._run_until_done(batch)
            # Step 5: commit
            if self._commits.due():
                await self._commit()
        if self._pending:
            await asyncio.gather(*self._pending)
        await self._commit()

    def _make_room(self) -> int:
        """Records the next fetch may take; pauses the partitions while there is no room
        (pending work at the stage's concurrency, or the stage not accepting)."""
        consumer = self._consumer
        assert consumer is not None
        room = self.settings.batch_max
        if self.stage.concurrency:
            room = min(room, self.stage.concurrency - len(self._pending))
        if room > 0 and self.stage.accepting():
            if consumer.paused():
                consumer.resume(*consumer.paused())
                self._set_paused(False)
            return room
        if not consumer.paused():
            self.metrics.pauses.inc()
        consumer.pause(*consumer.assignment())
        self._set_paused(True)
        return 0  # polls on (paused partitions return nothing) so the member stays in its group

    async def _collect(self, room: int) -> list:
        """One batch: what one fetch returns, or, with a linger, up to the size limit."""
        consumer = self._consumer
        assert consumer is not None
        limit, linger_ms = self.stage.batch_limits()
        if room <= 0:  # paused: look again soon, a pending may have freed room meanwhile
            fetched = await consumer.getmany(timeout_ms=self.settings.batch_wait_ms)
            for tp, part in fetched.items():  # newly assigned, not paused yet: fetch again later
                consumer.seek(tp, part[0].offset)
            return []
        max_records = min(limit, room)
        batch: list = []
        size = 0
        deadline: float | None = None
        while not self._stopping.is_set() and len(batch) < max_records and size < BATCH_BYTES:
            wait_ms = self._poll_ms
            if deadline is not None:
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    break
            records = self._guarded(
                await consumer.getmany(timeout_ms=wait_ms, max_records=max_records - len(batch))
            )
            self._poll_ms = self._pacer.polled(sum(len(part) for part in records.values()))
            for tp, part in records.items():
                for record in part:
                    self._progress.start(tp, record.offset)
                batch.extend(part)
                size += sum(len(r.value or b"") for r in part)
            if records:
                self._update_lag(records)
            if not batch or linger_ms <= 0:
                break  # nothing yet, or no linger: back to the loop (stop flag, status)
            if deadline is None:
                deadline = time.monotonic() + linger_ms / 1000
        return batch

    async def _run_until_done(self, batch: list) -> None:
        """Admit, process and produce ``batch``; on failure pause, back off and retry."""
        consumer = self._consumer
        assert consumer is not None
        backoff, paused = 0.1, False
        while True:
            started = time.perf_counter()
            try:
                pending = await self._run_batch(batch)
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
                    return  # stopping: not done, so not committed; replayed after restart
                assigned = consumer.assignment()
                batch = [r for r in batch if TopicPartition(r.topic, r.partition) in assigned]
                if not batch:
                    return  # the partitions moved; their new owner replays them
                backoff = min(backoff * 2, 10.0)
        if paused:
            consumer.resume(*consumer.assignment())
            self._set_paused(False)
        waiting = {(p.inbound.topic, p.inbound.partition, p.inbound.offset) for p in pending}
        for record in batch:
            if (record.topic, record.partition, record.offset) not in waiting:
                self._done(record.topic, record.partition, record.offset)
        for work in pending:
            task = asyncio.create_task(self._finish(work))
            self._pending.add(task)
            task.add_done_callback(self._pending_done)
        self.metrics.in_flight.set(len(self._pending))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _run_batch(self, batch: list) -> list[Pending]:
        outputs: list[Outbound] = []
        admitted = []
        # Step 2: admit
        for record in batch:
            item = await self._admission.admit(record)
            if isinstance(item, list):
                outputs.extend(item)
            else:
                admitted.append(item)
        # Step 3: process
        pending: list[Pending] = []
        if admitted:
            for out in await self.stage.process_traced(admitted, self._tracing):
                if isinstance(out, Pending):
                    pending.append(out)
                else:
                    outputs.extend(self._outbound(out))
        # Step 4: produce what is ready now
        await self._produce(recorded(outputs))
        return pending

    def _pending_done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        self.metrics.in_flight.set(len(self._pending))

    async def _finish(self, work: Pending) -> None:
        """Step 4 for one record's pending work: its outputs (computed once; given up on after
        :data:`PENDING_ATTEMPTS` failures), produced until acknowledged; then it is done."""
        item = work.inbound
        request_id_var.set(request_id_of(item.message) or "-")  # this task's log lines
        started = time.perf_counter()
        computed, outputs = await self._retried(
            lambda: self._pending_outputs(work),
            f"record {item.topic}[{item.partition}]@{item.offset}",
            PENDING_ATTEMPTS,
        )
        if not computed:  # given up: the record goes to the dead letters, with a reply
            error = Rejection("processing_failed", "the stage failed on this request repeatedly")
            outputs = self._admission.reject(Rejected(item, error))
        sent, _ = await self._retried(lambda: self._produce(outputs), "producing", attempts=0)
        if sent:
            self._done(item.topic, item.partition, item.offset)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _pending_outputs(self, work: Pending) -> list[Outbound]:
        return recorded([o for out in await work.outputs() for o in self._outbound(out)])

    async def _retried(self, call, what: str, attempts: int) -> tuple[bool, Any]:
        """(True, ``call()``'s result), retried with backoff while it raises, ``attempts`` times
        at most (0: until the stage stops); (False, None) when given up."""
        backoff, tried = 0.1, 0
        while not self._stopping.is_set() or tried == 0:
            try:
                return True, await call()
            except Exception:
                tried += 1
                self.metrics.failed.inc()
                log.exception("stage %s: %s failed (attempt %d)", self.stage.name, what, tried)
                if attempts and tried >= attempts:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return False, None

    def _outbound(self, out: Output) -> list[Outbound]:
        return self._admission.reject(out) if isinstance(out, Rejected) else [out]

    def _done(self, topic: str, partition: int, offset: int) -> None:
        self._progress.finish(TopicPartition(topic, partition), offset)
        self.metrics.processed.inc()

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

    async def _produce(self, outputs: list[Outbound]) -> None:
        assert self._producer is not None
        pending = []
        for out in outputs:
            key = out.key.encode() if out.key is not None else None
            headers = []
            if isinstance(out.message, Envelope):  # followers skip others' replies undecoded
                headers.append((REQUEST_ID_HEADER, out.message.request.request_id.encode()))
            if out.traceparent is not None:
                headers.append((TRACEPARENT_HEADER, out.traceparent.encode()))
            pending.append(
                await self._producer.send(
                    out.topic, encode(out.message), key=key, headers=headers or None
                )
            )
        if pending:
            await asyncio.gather(*pending)

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        """Step 5: commit what is done on the owned partitions (or on ``only`` of them)."""
        consumer = self._consumer
        assert consumer is not None
        owned = consumer.assignment() if only is None else only
        offsets = self._progress.committable(owned)
        self._commits.done()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self._progress.committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # partitions moved to another member: it replays from the last commit (at-least-once)
            log.warning(
                "stage %s: commit failed (%s); records may be replayed", self.stage.name, exc
            )

    async def _beat(self) -> None:
        """Say on ``wrp.stage-health`` that this process runs (or is paused), every few seconds."""
        while True:
            state = "paused" if self.status.get("paused") else "running"
            try:
                await self._send_heartbeat(state)
            except KafkaError as exc:  # the next beat retries; the gateway sees a gap meanwhile
                log.warning("stage %s: heartbeat failed: %r", self.stage.name, exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def _send_heartbeat(self, state: str) -> None:
        assert self._producer is not None
        health = heartbeat(self.stage.name, self.stage.name.split("+"), state, self._instance)
        await self._producer.send_and_wait(STAGE_HEALTH, encode(health), key=health.key.encode())

    def _set_paused(self, paused: bool) -> None:
        self.status["paused"] = paused
        self.metrics.paused.set(int(paused))

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
