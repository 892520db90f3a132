"""Offsets of a concurrent stage advance only below the oldest unfinished record."""

from aiokafka import TopicPartition

from pipeline.bus.offsets import OffsetProgress

TP, OTHER = TopicPartition("t", 0), TopicPartition("t", 1)


def test_commits_stop_at_the_oldest_unfinished_record():
    progress = OffsetProgress()
    for offset in (10, 11, 12):
        progress.start(TP, offset)
    progress.finish(TP, 11)
    progress.finish(TP, 12)
    assert progress.committable({TP}) == {TP: 10}  # 10 still in flight: replayed after a crash
    progress.committed[TP] = 10
    assert progress.committable({TP}) == {}  # nothing new
    progress.finish(TP, 10)
    assert progress.committable({TP}) == {TP: 13}


def test_only_assigned_partitions_are_committed():
    progress = OffsetProgress()
    progress.start(TP, 5)
    progress.start(OTHER, 7)
    progress.finish(TP, 5)
    progress.finish(OTHER, 7)
    assert progress.committable({TP}) == {TP: 6}
