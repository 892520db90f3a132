"""Processing a batch (steps 2 to 4 of the runner) and finishing each record's pending work.

2. admit: decode and validate each record (:mod:`pipeline.bus.admission`); what is refused
   becomes a dead letter and, when its request id can be read, an error reply;
3. process: the stage's ``process`` turns the admitted records into outputs, rejections (dead
   letters too) and :class:`~pipeline.bus.stage.Pending` work for single records (pool calls).
   An exception fails the whole batch: nothing is produced, consumption pauses, and the batch is
   retried with backoff (0.1 s doubling to 10 s) until it succeeds, the stage is told to stop
   (it is then replayed after a restart) or its partitions move to another member (which replays
   them);
4. produce: every immediate output (:mod:`pipeline.bus.produce`); the batch's records without
   pending work are then done. Each pending runs on its own: when it raises it is retried with
   backoff, and after :data:`PENDING_ATTEMPTS` failures its record is dead-lettered with an
   error reply instead; its outputs are produced (retried until acknowledged, never
   recomputed), then its record is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

from pipeline.bus.admission import Admission
from pipeline.bus.fetch import Fetcher
from pipeline.bus.health import StageMetrics
from pipeline.bus.offsets import Commits
from pipeline.bus.produce import produce
from pipeline.bus.stage import Outbound, Output, Pending, Rejected, Rejection, Stage, recorded
from pipeline.tracing import Tracing, request_id_of, request_id_var

log = logging.getLogger(__name__)

#: Pending work that raised this many times is given up on: its record is dead-lettered.
PENDING_ATTEMPTS = 5


class BatchProcessor:
    """Admits, processes and produces batches for ``stage``, and finishes its pending work."""

    def __init__(
        self,
        stage: Stage,
        admission: Admission,
        producer: Any,
        fetcher: Fetcher,
        commits: Commits,
        metrics: StageMetrics,
        tracing: Tracing,
        stopping: asyncio.Event,
    ) -> None:
        self.stage, self.admission, self.producer = stage, admission, producer
        self.fetcher, self.commits, self.metrics = fetcher, commits, metrics
        self.tracing, self.stopping = tracing, stopping
        #: the tasks finishing pending work, one per record
        self.pending: set[asyncio.Task[None]] = set()

    async def run_until_done(self, batch: list) -> None:
        """Admit, process and produce ``batch``; on failure pause, back off and retry."""
        consumer = self.fetcher.consumer
        backoff, paused = 0.1, False
        while True:
            started = time.perf_counter()
            try:
                pending = await self.run_batch(batch)
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
                    self.fetcher.set_paused(True)
                if not await self.fetcher.wait_paused(backoff):
                    return  # stopping: not done, so not committed; replayed after restart
                assigned = consumer.assignment()
                batch = [r for r in batch if TopicPartition(r.topic, r.partition) in assigned]
                if not batch:
                    return  # the partitions moved; their new owner replays them
                backoff = min(backoff * 2, 10.0)
        if paused:
            self.fetcher.resume()
        waiting = {(p.inbound.topic, p.inbound.partition, p.inbound.offset) for p in pending}
        for record in batch:
            if (record.topic, record.partition, record.offset) not in waiting:
                self._done(record.topic, record.partition, record.offset)
        for work in pending:
            task = asyncio.create_task(self._finish(work))
            self.pending.add(task)
            task.add_done_callback(self._pending_done)
        self.metrics.in_flight.set(len(self.pending))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def run_batch(self, batch: list) -> list[Pending]:
        """Steps 2 to 4 for ``batch`` once; its pending work, to finish on its own."""
        outputs: list[Outbound] = []
        admitted = []
        # Step 2: admit
        for record in batch:
            item = await self.admission.admit(record)
            if isinstance(item, list):
                outputs.extend(item)
            else:
                admitted.append(item)
        # Step 3: process
        pending: list[Pending] = []
        if admitted:
            for out in await self.stage.process_traced(admitted, self.tracing):
                if isinstance(out, Pending):
                    pending.append(out)
                else:
                    outputs.extend(self._outbound(out))
        # Step 4: produce what is ready now
        await produce(self.producer, recorded(outputs))
        return pending

    async def drain(self) -> None:
        """Wait for every pending work to finish (a clean stop)."""
        if self.pending:
            await asyncio.gather(*self.pending)

    async def cancel(self) -> None:
        """Cancel what pending work is left (after a failure: a clean stop drained it)."""
        for task in self.pending:
            task.cancel()
        await asyncio.gather(*self.pending, return_exceptions=True)

    def _pending_done(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        self.metrics.in_flight.set(len(self.pending))

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
            outputs = self.admission.reject(Rejected(item, error))
        sent, _ = await self._retried(
            lambda: produce(self.producer, outputs), "producing", attempts=0
        )
        if sent:
            self._done(item.topic, item.partition, item.offset)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _pending_outputs(self, work: Pending) -> list[Outbound]:
        return recorded([o for out in await work.outputs() for o in self._outbound(out)])

    async def _retried(
        self, call: Callable[[], Awaitable[Any]], what: str, attempts: int
    ) -> tuple[bool, Any]:
        """(True, ``call()``'s result), retried with backoff while it raises, ``attempts`` times
        at most (0: until the stage stops); (False, None) when given up."""
        backoff, tried = 0.1, 0
        while not self.stopping.is_set() or tried == 0:
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
        return self.admission.reject(out) if isinstance(out, Rejected) else [out]

    def _done(self, topic: str, partition: int, offset: int) -> None:
        self.commits.done(topic, partition, offset)
        self.metrics.processed.inc()
