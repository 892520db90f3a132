"""Held-out metrics of each trained head, on the ``eval`` split only.

The same functions fill the model cards at training time and ``wrp eval signals|safety``.
"""

from __future__ import annotations

import numpy as np

from pipeline.evaluation.tasks import Task
from pipeline.models.heads import Head


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def precision_recall(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(predicted & actual))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(actual.sum()), 1.0)
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(_f1(precision, recall), 4),
        "support": int(actual.sum()),
    }


def evaluate_softmax(head: Head, task: Task, x: np.ndarray) -> dict:
    """Accuracy and macro-F1 on eval rows, with per-class precision/recall."""
    rows = task.rows("eval")
    predicted = head.predict(x[rows]).argmax(axis=1)
    actual = task.targets[rows]
    per_class = {
        label: precision_recall(predicted == i, actual == i) for i, label in enumerate(head.labels)
    }
    return {
        "rows": len(rows),
        "accuracy": round(float((predicted == actual).mean()), 4),
        "macro_f1": round(float(np.mean([m["f1"] for m in per_class.values()])), 4),
        "per_class": per_class,
    }


def evaluate_complexity(head: Head, task: Task, x: np.ndarray) -> dict:
    """Softmax metrics plus how strong and weak models fare on each predicted class."""
    report = evaluate_softmax(head, task, x)
    rows = task.rows("eval")
    predicted = head.predict(x[rows]).argmax(axis=1)
    strong = np.asarray(task.meta["strong_accuracy"])[rows]
    weak = np.asarray(task.meta["weak_accuracy"])[rows]
    report["by_predicted_class"] = {
        label: {
            "rows": int((predicted == i).sum()),
            "strong_models_accuracy": round(float(np.nanmean(strong[predicted == i])), 4)
            if (predicted == i).any()
            else None,
            "weak_models_accuracy": round(float(np.nanmean(weak[predicted == i])), 4)
            if (predicted == i).any()
            else None,
        }
        for i, label in enumerate(head.labels)
    }
    return report


def attack_scores(head: Head, x: np.ndarray) -> np.ndarray:
    return head.predict(x)[:, head.labels.index("attack")]


def evaluate_jailbreak(
    head: Head, task: Task, x: np.ndarray, threshold: float, also: np.ndarray | None = None
) -> dict:
    """Recall per attack source and false-positive rate per benign source, eval rows only.

    ``also`` (a flag per row of the task) is OR-ed in: another detector run alongside the head.
    """
    rows = task.rows("eval")
    flagged = attack_scores(head, x[rows]) >= threshold
    if also is not None:
        flagged |= also[rows]
    sources = np.asarray(task.sources)[rows]
    targets = task.targets[rows]
    report: dict = {"threshold": round(threshold, 4), "attack_recall": {}, "benign_fpr": {}}
    for source in sorted(set(sources.tolist())):
        mine = sources == source
        is_attack = bool(targets[mine][0] == 1)
        key = "attack_recall" if is_attack else "benign_fpr"
        report[key][source] = {
            "rows": int(mine.sum()),
            "rate": round(float(flagged[mine].mean()), 4),
            "flagged": int(flagged[mine].sum()),
        }
    return report


def evaluate_moderation(head: Head, task: Task, x: np.ndarray, threshold: float) -> dict:
    """Per-category precision/recall on eval rows that carry that category's label."""
    rows = task.rows("eval")
    probs = head.predict(x[rows])
    targets = task.targets[rows]
    report: dict = {"threshold": threshold, "rows": len(rows), "categories": {}}
    for i, label in enumerate(head.labels):
        known = ~np.isnan(targets[:, i])
        report["categories"][label] = precision_recall(
            probs[known, i] >= threshold, targets[known, i] == 1
        )
    return report
