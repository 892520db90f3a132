"""Fetching (step 1 of the runner): how many records the next fetch may take, the fetch itself,
and pausing the partitions while there is no room (backpressure stays in Kafka, not in memory).

A fetch takes up to the room left (``batch_max``, less the records whose pending work is in
flight), waiting as long as the :class:`~pipeline.bus.clients.FetchPacer` allows; a stage with a
linger (the analytics sink) keeps fetching until its batch is full or the linger passed. A fetch
that skips offsets is cut at the gap and the partition fetched again (:mod:`pipeline.bus.gaps`).
Every record fetched is then in flight (:class:`~pipeline.bus.offsets.OffsetProgress`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pipeline.bus.clients import FetchPacer
from pipeline.bus.gaps import OffsetGaps
from pipeline.bus.health import StageMetrics
from pipeline.bus.offsets import OffsetProgress
from pipeline.bus.stage import Stage
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: A lingering batch stops growing at this many bytes of records, whatever its record count:
#: a batch held while its sink is down stays this small.
BATCH_BYTES = 64 * 1024 * 1024


class Fetcher:
    """Fetches batches for ``stage`` from ``consumer`` and pauses it when there is no room."""

    def __init__(
        self,
        consumer: Any,
        stage: Stage,
        settings: Settings,
        metrics: StageMetrics,
        status: dict[str, object],
        progress: OffsetProgress,
        gaps: OffsetGaps,
        stopping: asyncio.Event,
    ) -> None:
        self.consumer, self.stage, self.settings = consumer, stage, settings
        self.metrics, self.status, self.progress = metrics, status, progress
        self.gaps, self.stopping = gaps, stopping
        self.pacer = FetchPacer(
            consumer,
            stage.fetch_busy_ms,
            stage.fetch_idle_ms or settings.fetch_idle_ms,
            settings.batch_wait_ms,
        )
        self._poll_ms = settings.batch_wait_ms

    def room(self, in_flight: int) -> int:
        """Records the next fetch may take, ``in_flight`` records having pending work; pauses
        the partitions while there is no room (pending work at the stage's concurrency, or the
        stage not accepting)."""
        consumer = self.consumer
        room = self.settings.batch_max
        if self.stage.concurrency:
            room = min(room, self.stage.concurrency - in_flight)
        if room > 0 and self.stage.accepting():
            if consumer.paused():
                consumer.resume(*consumer.paused())
                self.set_paused(False)
            return room
        if not consumer.paused():
            self.metrics.pauses.inc()
        consumer.pause(*consumer.assignment())
        self.set_paused(True)
        return 0  # polls on (paused partitions return nothing) so the member stays in its group

    async def collect(self, room: int) -> list:
        """One batch: what one fetch returns, or, with a linger, up to the size limit."""
        consumer = self.consumer
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
        while not self.stopping.is_set() and len(batch) < max_records and size < BATCH_BYTES:
            wait_ms = self._poll_ms
            if deadline is not None:
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    break
            records = self._guarded(
                await consumer.getmany(timeout_ms=wait_ms, max_records=max_records - len(batch))
            )
            self._poll_ms = self.pacer.polled(sum(len(part) for part in records.values()))
            for tp, part in records.items():
                for record in part:
                    self.progress.start(tp, record.offset)
                batch.extend(part)
                size += sum(len(r.value or b"") for r in part)
            if records:
                self._update_lag(records)
            if not batch or linger_ms <= 0:
                break  # nothing yet, or no linger: back to the loop (stop flag, status)
            if deadline is None:
                deadline = time.monotonic() + linger_ms / 1000
        return batch

    async def wait_paused(self, seconds: float) -> bool:
        """Wait with every partition paused, still polling so the group keeps this member;
        False when the stage is told to stop meanwhile."""
        consumer = self.consumer
        until = time.monotonic() + seconds
        while not self.stopping.is_set():
            consumer.pause(*consumer.assignment())
            left = until - time.monotonic()
            if left <= 0:
                return True
            fetched = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for tp, part in fetched.items():  # newly assigned while paused: fetch again later
                consumer.seek(tp, part[0].offset)
        return False

    def resume(self) -> None:
        """Resume every assigned partition after a failed batch went through."""
        self.consumer.resume(*self.consumer.assignment())
        self.set_paused(False)

    def set_paused(self, paused: bool) -> None:
        self.status["paused"] = paused
        self.metrics.paused.set(int(paused))

    def _guarded(self, records: dict) -> dict:
        """``records`` minus what follows an offset gap, whose partition is fetched again."""
        kept, gaps = self.gaps.check(self.consumer.assignment(), records)
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
                self.consumer.seek(gap.tp, gap.expected)
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
        """The consumer-lag gauge of each partition fetched: records behind its end."""
        for tp, part in records.items():
            high = self.consumer.highwater(tp)
            if high is not None:
                behind = max(0, high - (part[-1].offset + 1))
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(behind)
