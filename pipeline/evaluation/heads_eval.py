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


MODERATION_SOURCE = "openai_moderation"
#: The safety head's risk classes; each is a detector with its own threshold.
RISK_CLASSES = ("jailbreak", "injection", "harmful")


def risk_flags(head: Head, x: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """(rows, classes) booleans: each risk class's probability against its threshold."""
    probs = head.predict(x)
    return np.stack([probs[:, head.labels.index(c)] >= thresholds[c] for c in RISK_CLASSES], axis=1)


def evaluate_safety_head(
    head: Head, task: Task, x: np.ndarray, thresholds: dict[str, float]
) -> dict:
    """The head alone on each eval row's head+tail embedding (the model card's figure; the
    shipped decision is ``wrp eval safety``'s): recall per attack source and false-positive
    rate per benign source.

    A row counts as flagged when any risk class fires; ``as_own_class`` says how many attack
    rows fired on their own class.
    """
    rows = task.rows("eval")
    per_class = risk_flags(head, x[rows], thresholds)
    flagged = per_class.any(axis=1)
    sources = np.asarray(task.sources)[rows]
    targets = task.targets[rows]
    report: dict = {
        "thresholds": {c: round(t, 4) for c, t in thresholds.items()},
        "attack_recall": {},
        "benign_fpr": {},
    }
    for source in sorted(set(sources.tolist())):
        mine = sources == source
        label = int(targets[mine][0])
        entry = {
            "rows": int(mine.sum()),
            "rate": round(float(flagged[mine].mean()), 4),
            "flagged": int(flagged[mine].sum()),
        }
        if label:
            own = per_class[mine, RISK_CLASSES.index(head.labels[label])]
            entry["as_own_class"] = round(float(own.mean()), 4)
        report["attack_recall" if label else "benign_fpr"][source] = entry
    return report


def evaluate_moderation(
    head: Head, task: Task, x: np.ndarray, thresholds: dict[str, float]
) -> dict:
    """Per-category precision/recall on the moderation set's eval rows that carry that label,
    and the share of each benign source's eval rows on which any category fires."""
    rows = task.rows("eval")
    probs = head.predict(x[rows])
    sources = np.asarray(task.sources)[rows]
    fired = probs >= np.array([thresholds[c] for c in head.labels])
    report: dict = {"thresholds": thresholds, "benign_flag_rate": {}}
    for source in sorted(set(sources.tolist()) - {MODERATION_SOURCE}):
        mine = sources == source
        report["benign_flag_rate"][source] = {
            "rows": int(mine.sum()),
            "rate": round(float(fired[mine].any(axis=1).mean()), 4),
        }
    labelled = sources == MODERATION_SOURCE
    probs, targets = probs[labelled], task.targets[rows][labelled]
    report.update(rows=int(labelled.sum()), categories={})
    for i, label in enumerate(head.labels):
        known = ~np.isnan(targets[:, i])
        report["categories"][label] = precision_recall(
            probs[known, i] >= thresholds[label], targets[known, i] == 1
        )
    return report
