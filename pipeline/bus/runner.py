"""The stage runner: at-least-once processing on Kafka, one loop for every stage.

The runner starts a stage's clients and HTTP port, then loops through the checkpoint steps,
each labelled "Step n" where it happens:

1. fetch (:mod:`pipeline.bus.fetch`): up to the room left, pausing the partitions while there is
   none; every record fetched is then in flight (:mod:`pipeline.bus.offsets`);
2. admit (:mod:`pipeline.bus.processing`, :mod:`pipeline.bus.admission`): decode and validate
   each record; what is refused becomes a dead letter (:mod:`pipeline.bus.dead_letters`) and,
   when its request id can be read, an error reply;
3. process (:mod:`pipeline.bus.processing`): the stage's ``process``; a batch that raises is
   retried with backoff, consumption paused meanwhile;
4. produce (:mod:`pipeline.bus.produce`, :mod:`pipeline.bus.processing`): every immediate output,
   acknowledged; each record's pending work on its own, then its outputs. While ``concurrency``
   records are pending or the stage is not ``accepting``, the partitions are paused:
   backpressure stays in Kafka, not in memory;
5. commit (:mod:`pipeline.bus.offsets`): each partition's offset up to its oldest record not yet
   done, every ``WRP_COMMIT_INTERVAL_MS``, when partitions are revoked, and when the stage stops.

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

from aiokafka.errors import KafkaError

from pipeline.bus.admission import DLQ_SIZE_FACTOR, Admission
from pipeline.bus.catalog import load_catalog
from pipeline.bus.clients import Consumer, Producer, broker_topics, new_consumer, new_producer
from pipeline.bus.fetch import Fetcher
from pipeline.bus.gaps import OffsetGaps
from pipeline.bus.health import StageMetrics, health_app
from pipeline.bus.liveness import beat, instance_id, send_heartbeat
from pipeline.bus.offsets import CommitOnRevoke, Commits
from pipeline.bus.processing import BatchProcessor
from pipeline.bus.replies import ReplyTopics
from pipeline.bus.stage import Stage
from pipeline.http_server import serve_http
from pipeline.settings import Settings
from pipeline.tracing import tracing_for

log = logging.getLogger(__name__)


class MissingTopics(RuntimeError):
    """The broker lacks catalog topics; stages never create them."""


class StageRunner:
    """Runs one :class:`Stage` against Kafka with at-least-once semantics."""

    def __init__(self, stage: Stage, settings: Settings, port: int | None = None) -> None:
        self.stage = stage
        self.settings = settings
        self.port = settings.stage_port(stage.name) if port is None else port
        self.metrics = StageMetrics(stage.name)
        stage.metrics = self.metrics
        self.status: dict[str, object] = {"state": "starting"}
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self._stopping = asyncio.Event()
        catalog = self._catalog = load_catalog()
        self._payloads = {t: catalog.get(t).payload_model for t in stage.topics}
        #: the gap guard, for the stage's delete-policy topics (compacted ones have gaps)
        self._gaps = OffsetGaps(
            frozenset(t for t in stage.topics if catalog.get(t).cleanup_policy == "delete")
        )
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
        processor: BatchProcessor | None = None
        started = False
        try:
            self.producer = new_producer(
                self.settings.broker,
                linger_ms=1,
                max_request_size=DLQ_SIZE_FACTOR * self.settings.max_request_bytes,
            )
            await self.producer.start()
            admission = await self._admission()
            await self.stage.start()
            started = True
            self.consumer = new_consumer(
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
            commits = Commits(self.consumer, self.stage.name, self.settings.commit_interval_ms)
            self.consumer.subscribe(list(self.stage.topics), listener=CommitOnRevoke(commits))
            await self.consumer.start()
            fetcher = Fetcher(
                self.consumer,
                self.stage,
                self.settings,
                self.metrics,
                self.status,
                commits.progress,
                self._gaps,
                self._stopping,
            )
            processor = BatchProcessor(
                self.stage,
                admission,
                self.producer,
                fetcher,
                commits,
                self.metrics,
                self._tracing,
                self._stopping,
            )
            self.status["state"] = "running"
            log.info("stage %s consuming %s", self.stage.name, ", ".join(self.stage.topics))
            heartbeats = asyncio.create_task(
                beat(self.producer, self.stage.name, self._liveness, self._instance)
            )
            await self._loop(fetcher, processor, commits)
        finally:
            self.status["state"] = "stopping"
            if processor is not None:  # only after a failure: a clean stop waited for them
                await processor.cancel()
            if heartbeats is not None:
                heartbeats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeats
                with contextlib.suppress(KafkaError):  # the readiness check then goes by age
                    await send_heartbeat(self.producer, self.stage.name, "stopping", self._instance)
            if self.consumer is not None:
                await self.consumer.stop()
            if self.producer is not None:
                await self.producer.stop()
            if started:
                await self.stage.stop()
            self._tracing.shutdown()
            http_server.should_exit = True
            await http_task

    async def _loop(self, fetcher: Fetcher, processor: BatchProcessor, commits: Commits) -> None:
        """The checkpoint steps, batch after batch, until the stage is told to stop."""
        consumer = self.consumer
        assert consumer is not None
        while not self._stopping.is_set():
            self.status["partitions"] = len(consumer.assignment())
            room = fetcher.room(len(processor.pending))
            # Step 1: fetch
            batch = await fetcher.collect(room)
            if batch:
                # Steps 2-4: admit, process, produce; retried as one while the stage fails
                await processor.run_until_done(batch)
            # Step 5: commit
            if commits.due():
                await commits.commit()
        await processor.drain()
        # Step 5, once more: what the batch and the pending work finished
        await commits.commit()

    async def _admission(self) -> Admission:
        """Every catalog topic exists (a stage produces to several and creates none); reply
        topics are then checked against the broker as requests name them."""
        producer = self.producer
        assert producer is not None
        missing = sorted({t.name for t in self._catalog.topics} - await broker_topics(producer))
        if missing:
            raise MissingTopics(
                f"topic(s) {', '.join(missing)} do not exist on {self.settings.broker}: "
                "create them with `wrp topics create` (stages never create topics)"
            )
        replies = ReplyTopics(
            self._catalog, self.settings.reply_topic_prefix, lambda: broker_topics(producer)
        )
        return Admission(self.stage, self.settings, self.metrics, self._payloads, replies)

    def _liveness(self) -> str:
        return "paused" if self.status.get("paused") else "running"
