"""Offsets and commits (step 5 of the runner): per partition, which records are still being
worked on, and what may be committed: everything below the oldest unfinished record.

Commits are not a round trip per batch: they go out every ``WRP_COMMIT_INTERVAL_MS`` while there
is progress, when partitions are revoked (for those partitions, so their next owner starts past
them) and when the stage stops. A crash replays at most what finished since the last commit;
every consumer is idempotent by request id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

log = logging.getLogger(__name__)


class OffsetProgress:
    """Per partition: offsets in flight and the highest started."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, set[int]] = {}
        self.highest: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, set()).add(offset)
        self.highest[tp] = max(self.highest.get(tp, -1), offset)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        self.pending.get(tp, set()).discard(offset)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Drop what is known of partitions this member no longer owns."""
        for tp in tps:
            self.pending.pop(tp, None)
            self.highest.pop(tp, None)
            self.committed.pop(tp, None)

    def committable(self, owned: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Offsets to commit now: those of owned partitions that moved since the last commit."""
        offsets = {}
        for tp, highest in self.highest.items():
            pending = self.pending.get(tp)
            offset = min(pending) if pending else highest + 1
            if tp in owned and offset != self.committed.get(tp):
                offsets[tp] = offset
        return offsets


class CommitSchedule:
    """When the next periodic commit is due."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_s = interval_ms / 1000
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval_s

    def done(self) -> None:
        self.last = time.monotonic()


class Commits:
    """Step 5: commits what is done on a consumer's partitions, when due and when asked."""

    def __init__(self, consumer: Any, stage: str, interval_ms: int) -> None:
        self.consumer, self.stage = consumer, stage
        self.progress = OffsetProgress()
        self.schedule = CommitSchedule(interval_ms)

    def due(self) -> bool:
        return self.schedule.due()

    def done(self, topic: str, partition: int, offset: int) -> None:
        """A record done with: its offset may be committed once every earlier one is done."""
        self.progress.finish(TopicPartition(topic, partition), offset)

    async def commit(self, only: set[TopicPartition] | None = None) -> None:
        """Commit what is done on the owned partitions (or on ``only`` of them)."""
        owned = self.consumer.assignment() if only is None else only
        offsets = self.progress.committable(owned)
        self.schedule.done()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
            self.progress.committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # partitions moved to another member: it replays from the last commit (at-least-once)
            log.warning("stage %s: commit failed (%s); records may be replayed", self.stage, exc)


class CommitOnRevoke(ConsumerRebalanceListener):
    """Commits what is done on partitions before they move to another member."""

    def __init__(self, commits: Commits) -> None:
        self.commits = commits

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.commits.commit(set(revoked))
        self.commits.progress.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass
