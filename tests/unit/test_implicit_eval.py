"""The implicit-feedback evaluation: its hand labels are well formed and resolve to turns of the
shared data, and its scores count what they say."""

import csv

import pytest

from pipeline.evaluation.implicit_eval import (
    FRESH_SAMPLE,
    HH_SAMPLE,
    LABELS_PATH,
    fresh_sample,
    read_labels,
    sample,
    scores,
)
from pipeline.learn.implicit import IMPLICIT_LABELS
from pipeline.settings import DataMissing, data_dir


def shared_data():
    try:
        return data_dir()
    except DataMissing as exc:
        pytest.skip(f"needs ../shared/data: {exc}")


def test_the_label_file_holds_identifiers_and_labels_only():
    with LABELS_PATH.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"source", "row", "turn", "label", "batch"}
    assert {r["label"] for r in rows} == set(IMPLICIT_LABELS)
    keys = [(r["source"], r["row"], r["turn"]) for r in rows]
    assert len(keys) == len(set(keys))
    batches = [r["batch"] for r in rows]
    assert (batches.count("1"), batches.count("2")) == (HH_SAMPLE + 80, FRESH_SAMPLE)


def test_every_label_names_a_turn_of_the_draws_it_came_from():
    root = shared_data()
    labelled = read_labels(root)
    first = [e.key for e in sample(root)]
    fresh = [e.key for e in fresh_sample(root)]
    assert [r.exchange.key for r in labelled] == first + fresh
    assert {r.split for r in labelled[: len(first)]} == {"tune", "test"}
    assert {r.split for r in labelled[len(first) :]} == {"fresh"}
    assert all(r.exchange.next and r.exchange.previous for r in labelled)


def test_scores_count_precision_recall_and_the_confusion():
    truth = ["moved_on", "moved_on", "says_wrong", "re_ask"]
    predicted = ["moved_on", "says_wrong", "says_wrong", "moved_on"]
    result = scores(truth, predicted)
    assert result["accuracy"] == 0.5
    assert result["labels"]["says_wrong"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": 0.667,
        "support": 1,
        "predicted": 2,
    }
    assert result["labels"]["re_ask"]["recall"] == 0.0
    assert result["confusion"]["moved_on"] == {
        "moved_on": 1,
        "says_wrong": 1,
        "clarify": 0,
        "re_ask": 0,
    }
