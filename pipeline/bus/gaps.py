"""Offset-gap guard: records a consumer skipped are fetched again instead of silently lost.

On a delete-policy topic without transactions, a partition's offsets are consecutive, so each
record a member fetches should carry the offset after the previous one. A fetch that jumps ahead
means records went missing between the broker and this member (a broker or client bug), and
committing past them would lose them for good. The guard cuts the fetch at the gap and rewinds
the partition to the first missing offset, once per gap; a gap still there after the rewind is
accepted and reported (the broker no longer has those offsets). Compacted topics have gaps by
design and are not checked. Expectations reset whenever the assignment changes, since the next
fetch then starts from the group's committed offset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka import TopicPartition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    tp: TopicPartition
    expected: int
    found: int
    rewind: bool  # True: fetch again from ``expected``; False: accepted as absent


@dataclass
class OffsetGaps:
    checked_topics: frozenset[str]
    expected: dict[TopicPartition, int] = field(default_factory=dict)
    rewound_at: dict[TopicPartition, int] = field(default_factory=dict)
    assignment: frozenset[TopicPartition] = frozenset()

    def check(
        self, assignment: set[TopicPartition], records: dict[TopicPartition, list]
    ) -> tuple[dict[TopicPartition, list], list[Gap]]:
        """The records to process (each partition's cut at a gap it rewinds) and the gaps."""
        if assignment != self.assignment:
            self.assignment = frozenset(assignment)
            self.expected.clear()
            self.rewound_at.clear()
        kept: dict[TopicPartition, list] = {}
        gaps: list[Gap] = []
        for tp, part in records.items():
            if tp.topic not in self.checked_topics:
                kept[tp] = part
                continue
            kept[tp], gap = self._walk(tp, part)
            if gap is not None:
                gaps.append(gap)
        return {tp: part for tp, part in kept.items() if part}, gaps

    def _walk(self, tp: TopicPartition, part: list) -> tuple[list, Gap | None]:
        expected = self.expected.get(tp)
        gap = None
        for i, record in enumerate(part):
            if expected is not None and record.offset > expected:
                if self.rewound_at.get(tp) != expected:
                    self.rewound_at[tp] = expected
                    return part[:i], Gap(tp, expected, record.offset, rewind=True)
                gap = Gap(tp, expected, record.offset, rewind=False)
            expected = record.offset + 1  # a lower offset is a replay: follow it
            self.expected[tp] = expected
        return part, gap
