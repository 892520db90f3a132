"""``wrp eval implicit``: the next-turn detector (:mod:`pipeline.learn.implicit`) on hand labels.

The labelled sample is the project's own: next user turns drawn with a fixed seed from the
shared data's multi-turn material (Anthropic HH-RLHF red-team dialogues, MT-Bench's second
turns) and labelled by reading them. ``implicit_labels.csv`` beside this file holds only the
labels and where each turn is (source file, row, turn index); the text is read from
``../shared/data`` at run time, never copied. The first draw splits by a hash of each row's
identifier into ``tune`` (where the re-ask threshold is chosen) and ``test``; its cue lists were
written while reading it. A second draw (``fresh``) was labelled after the detector was frozen.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.envelope import ImplicitLabel
from pipeline.evaluation.datasets import data_file
from pipeline.evaluation.embedding_cache import EmbeddingCache
from pipeline.evaluation.split import split_of
from pipeline.learn.implicit import IMPLICIT_LABELS, classify_next_turn, text_digest
from pipeline.policy import ImplicitConfig
from pipeline.settings import data_dir

LABELS_PATH = Path(__file__).with_name("implicit_labels.csv")
HH_RLHF = "safety/hh_rlhf/harmless_base_test.jsonl.gz"
MT_BENCH_QUESTIONS = "routing/routellm/mt_bench_question.jsonl"
MT_BENCH_ANSWERS = "routing/routellm/mt_bench_answers_martian.jsonl"
#: next turns drawn from HH-RLHF (every MT-Bench second turn is labelled too)
HH_SAMPLE = 260
FRESH_SAMPLE = 140
SEED = 18
#: share of the first draw held out for the test split
TEST_SHARE = 0.5
SPLITS = ("tune", "test", "fresh")
_TURN = re.compile(r"\n\nHuman: |\n\nAssistant: ")


@dataclass(frozen=True)
class Exchange:
    """A user turn, the answer it got, and the user's next turn."""

    source: str
    row: int
    turn: int  # index of the next user turn among the dialogue's user turns
    previous: str
    answer: str
    next: str

    @property
    def key(self) -> str:
        return f"{self.source}:{self.row}:{self.turn}"


def _hh_dialogue(transcript: str) -> list[tuple[str, str]]:
    """(user, assistant) turns of an HH-RLHF transcript; the last answer may be empty."""
    parts = _TURN.split(transcript)[1:]
    return [(parts[i], parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]


def hh_exchanges(root: Path) -> list[Exchange]:
    """Every (user turn, answer, next user turn) of the HH-RLHF test dialogues (``chosen``)."""
    out = []
    with gzip.open(data_file(root, HH_RLHF), "rt") as lines:
        for row, line in enumerate(lines):
            turns = _hh_dialogue(json.loads(line)["chosen"])
            for i in range(1, len(turns)):
                previous, answer = turns[i - 1]
                out.append(Exchange(HH_RLHF, row, i, previous, answer, turns[i][0]))
    return out


def mt_bench_exchanges(root: Path) -> list[Exchange]:
    """MT-Bench's first turn, an answer to it (Martian's router), and the second turn."""
    answers = {}
    for line in data_file(root, MT_BENCH_ANSWERS).read_text().splitlines():
        item = json.loads(line)
        answers[item["question_id"]] = item["choices"][0]["turns"][0]
    out = []
    for row, line in enumerate(data_file(root, MT_BENCH_QUESTIONS).read_text().splitlines()):
        item = json.loads(line)
        first, second = item["turns"][:2]
        out.append(
            Exchange(MT_BENCH_QUESTIONS, row, 1, first, answers[item["question_id"]], second)
        )
    return out


def sample(root: Path) -> list[Exchange]:
    """The first draw (batch 1): :data:`HH_SAMPLE` HH-RLHF next turns drawn with :data:`SEED`,
    then every MT-Bench second turn."""
    hh = hh_exchanges(root)
    return [*random.Random(SEED).sample(hh, HH_SAMPLE), *mt_bench_exchanges(root)]


def fresh_sample(root: Path) -> list[Exchange]:
    """The second draw (batch 2), labelled after the detector was frozen: :data:`FRESH_SAMPLE`
    HH-RLHF next turns not in the first, drawn with :data:`SEED` + 1."""
    first = {e.key for e in sample(root)}
    rest = [e for e in hh_exchanges(root) if e.key not in first]
    return random.Random(SEED + 1).sample(rest, FRESH_SAMPLE)


@dataclass(frozen=True)
class Labelled:
    exchange: Exchange
    label: ImplicitLabel
    #: 1: the first draw, read while the cue lists were written; 2: a fresh draw labelled after
    #: the detector was frozen
    batch: int

    @property
    def split(self) -> str:
        """tune or test for the first draw (by a hash of the row's identifier); fresh for the
        second."""
        if self.batch != 1:
            return "fresh"
        return "test" if split_of(self.exchange.key, TEST_SHARE) == "eval" else "tune"


def read_labels(root: Path, path: Path = LABELS_PATH) -> list[Labelled]:
    """The hand labels joined with the text they label, read from the shared data."""
    exchanges = {e.key: e for e in [*hh_exchanges(root), *mt_bench_exchanges(root)]}
    out = []
    with path.open(newline="") as f:
        for item in csv.DictReader(f):
            key = f"{item['source']}:{item['row']}:{item['turn']}"
            if key not in exchanges:
                raise ValueError(f"{path}: no exchange {key} in the shared data")
            out.append(Labelled(exchanges[key], item["label"], int(item["batch"])))  # type: ignore[arg-type]
    return out


def answered_with_question(exchange: Exchange) -> bool:
    return exchange.answer.rstrip().endswith("?")


def similarities(rows: list[Labelled], cache: EmbeddingCache) -> np.ndarray:
    """Cosine between each row's two user turns, as the signals stage sees them (the shipped
    encoder, float16 embeddings; the same text is 1)."""
    previous = cache.embed([r.exchange.previous for r in rows], "previous turns")
    following = cache.embed([r.exchange.next for r in rows], "next turns")
    cosines = np.einsum("ij,ij->i", previous, following) / np.maximum(
        np.linalg.norm(previous, axis=1) * np.linalg.norm(following, axis=1), 1e-9
    )
    same = np.array(
        [text_digest(r.exchange.previous) == text_digest(r.exchange.next) for r in rows]
    )
    return np.where(same, 1.0, cosines)


def predict(rows: list[Labelled], cosines: np.ndarray, threshold: float) -> list[ImplicitLabel]:
    return [
        classify_next_turn(r.exchange.next, float(c), answered_with_question(r.exchange), threshold)
        for r, c in zip(rows, cosines, strict=True)
    ]


def scores(truth: list[str], predicted: list[str]) -> dict:
    """Per-label precision, recall, F1 and support; macro-F1, accuracy and the confusion
    matrix (rows: hand label, columns: detector)."""
    per_label = {}
    for label in IMPLICIT_LABELS:
        tp = sum(t == p == label for t, p in zip(truth, predicted, strict=True))
        said, real = predicted.count(label), truth.count(label)
        precision = tp / said if said else 0.0
        recall = tp / real if real else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(f1, 3),
            "support": real,
            "predicted": said,
        }
    pairs = Counter(zip(truth, predicted, strict=True))
    return {
        "rows": len(truth),
        "accuracy": round(
            sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth), 3
        ),
        "macro_f1": round(float(np.mean([v["f1"] for v in per_label.values()])), 3),
        "labels": per_label,
        "confusion": {t: {p: pairs[(t, p)] for p in IMPLICIT_LABELS} for t in IMPLICIT_LABELS},
    }


#: re-ask thresholds tried on the tune split
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.40, 0.96, 0.05))


def eval_implicit(cache: EmbeddingCache, config: ImplicitConfig) -> dict:
    """Choose the re-ask threshold on the tune split (best macro-F1, the higher on ties), then
    score the shipped setting (``config``) on the test split and on the fresh draw."""
    rows = read_labels(data_dir())
    cosines = similarities(rows, cache)
    parts = {name: [i for i, r in enumerate(rows) if r.split == name] for name in SPLITS}

    def evaluate(part: str, threshold: float) -> dict:
        chosen = [rows[i] for i in parts[part]]
        predicted = predict(chosen, cosines[parts[part]], threshold)
        result = scores([r.label for r in chosen], predicted)
        given: dict[str, list[float]] = {}
        for row, label in zip(chosen, predicted, strict=True):
            given.setdefault(row.label, []).append(config.rewards[label])
        # what the learner is told about answers of each kind (1 = good)
        result["mean_reward"] = {k: round(float(np.mean(v)), 3) for k, v in given.items()}
        hits: dict[str, list[bool]] = {}
        for row, label in zip(chosen, predicted, strict=True):
            hits.setdefault(Path(row.exchange.source).name, []).append(row.label == label)
        result["accuracy_by_source"] = {k: round(float(np.mean(v)), 3) for k, v in hits.items()}
        return result

    tuning = {t: evaluate("tune", t)["macro_f1"] for t in THRESHOLDS}
    best = max(THRESHOLDS, key=lambda t: (tuning[t], t))
    shipped = config.re_ask_similarity
    return {
        "labels": str(LABELS_PATH.relative_to(LABELS_PATH.parents[2])),
        "rows": {name: len(ids) for name, ids in parts.items()},
        "sources": dict(Counter(r.exchange.source for r in rows)),
        "tuned_threshold": best,
        "tune_macro_f1": tuning,
        "shipped_threshold": shipped,
        "all_moved_on_accuracy": {
            name: round(sum(rows[i].label == "moved_on" for i in ids) / max(len(ids), 1), 3)
            for name, ids in parts.items()
        },
        "splits": {name: evaluate(name, shipped) for name in ("test", "fresh") if parts[name]},
    }


def render(report: dict) -> str:
    lines = [
        f"implicit feedback detector on {report['labels']} (the project's own hand labels: "
        + ", ".join(f"{n} {k}" for k, n in report["rows"].items())
        + " rows)",
        f"re-ask threshold chosen on tune: {report['tuned_threshold']}; shipped "
        f"(router.learning.implicit.re_ask_similarity): {report['shipped_threshold']}",
    ]
    for name, result in report["splits"].items():
        lines += [
            "",
            f"{name}: {result['rows']} rows, accuracy {result['accuracy']} (all moved_on: "
            f"{report['all_moved_on_accuracy'][name]}), macro-F1 {result['macro_f1']}",
            f"  {'label':<11} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}",
        ]
        for label, v in result["labels"].items():
            lines.append(
                f"  {label:<11} {v['precision']:>9} {v['recall']:>7} {v['f1']:>6} {v['support']:>8}"
            )
        lines.append(
            "  mean reward the learner is given, by hand label: "
            + ", ".join(f"{k} {v}" for k, v in result["mean_reward"].items())
        )
        lines.append(
            "  accuracy by source: "
            + ", ".join(f"{k} {v}" for k, v in result["accuracy_by_source"].items())
        )
        lines.append("  confusion (rows: hand label, columns: detector)")
        lines.append("  " + " " * 11 + "".join(f"{p:>11}" for p in IMPLICIT_LABELS))
        for truth, row in result["confusion"].items():
            lines.append(f"  {truth:<11}" + "".join(f"{row[p]:>11}" for p in IMPLICIT_LABELS))
    return "\n".join(lines)
