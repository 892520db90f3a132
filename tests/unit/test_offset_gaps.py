"""The offset-gap guard cuts a fetch at skipped offsets, rewinds once, then accepts the gap."""

from types import SimpleNamespace

from aiokafka import TopicPartition

from pipeline.bus.gaps import Gap, OffsetGaps

TP = TopicPartition("wrp.responses", 0)
COMPACTED = TopicPartition("wrp.pool-state", 0)


def fetched(tp: TopicPartition, *offsets: int) -> dict[TopicPartition, list]:
    return {tp: [SimpleNamespace(offset=o) for o in offsets]}


def offsets(records: dict[TopicPartition, list], tp: TopicPartition = TP) -> list[int]:
    return [r.offset for r in records.get(tp, [])]


def guard() -> OffsetGaps:
    return OffsetGaps(frozenset({TP.topic}))


def test_consecutive_fetches_pass_untouched():
    gaps = guard()
    kept, found = gaps.check({TP}, fetched(TP, 0, 1, 2))
    assert offsets(kept) == [0, 1, 2] and found == []
    kept, found = gaps.check({TP}, fetched(TP, 3, 4))
    assert offsets(kept) == [3, 4] and found == []


def test_a_skip_cuts_the_fetch_and_rewinds_to_the_first_missing_offset():
    gaps = guard()
    gaps.check({TP}, fetched(TP, 0, 1))
    kept, found = gaps.check({TP}, fetched(TP, 2, 6, 7))
    assert offsets(kept) == [2]
    assert found == [Gap(TP, expected=3, found=6, rewind=True)]
    kept, found = gaps.check({TP}, fetched(TP, 3, 4, 5, 6, 7))  # the refetch has them
    assert offsets(kept) == [3, 4, 5, 6, 7] and found == []


def test_a_gap_still_there_after_the_rewind_is_accepted_and_reported():
    gaps = guard()
    gaps.check({TP}, fetched(TP, 0))
    kept, found = gaps.check({TP}, fetched(TP, 5, 6))
    assert kept == {} and found == [Gap(TP, 1, 5, rewind=True)]
    kept, found = gaps.check({TP}, fetched(TP, 5, 6))
    assert offsets(kept) == [5, 6] and found == [Gap(TP, 1, 5, rewind=False)]
    kept, found = gaps.check({TP}, fetched(TP, 9))  # a new gap rewinds again
    assert kept == {} and found == [Gap(TP, 7, 9, rewind=True)]


def test_replays_compacted_topics_and_new_assignments_are_not_gaps():
    gaps = OffsetGaps(frozenset({TP.topic}))
    gaps.check({TP, COMPACTED}, {**fetched(TP, 10), **fetched(COMPACTED, 0)})
    kept, found = gaps.check({TP, COMPACTED}, {**fetched(TP, 4), **fetched(COMPACTED, 9)})
    assert offsets(kept) == [4] and offsets(kept, COMPACTED) == [9] and found == []
    kept, found = gaps.check({TP}, fetched(TP, 40))  # the assignment changed: committed offset
    assert offsets(kept) == [40] and found == []
