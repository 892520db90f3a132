"""`wrp models train NAME`: fit a head on the train split, measure it on the eval split, and
write ``trained/NAME.npz`` with a model card ``trained/NAME.md``.

Thresholds are never chosen on eval rows: the safety head's per-detector thresholds and the
moderation head's per-category thresholds come from out-of-fold predictions on the train rows
(3 folds, by a hash of the text). The safety head's are calibrated on what the screener acts
on: the highest score over the encoder windows of a text.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.evaluation import heads_eval
from pipeline.evaluation.embedding_cache import EmbeddingCache
from pipeline.evaluation.tasks import TASKS, Task
from pipeline.models.heads import TRAINED_DIR, Head, balanced_weights, train_head
from pipeline.policy import ScanConfig
from pipeline.safety.scan import detector_scores

#: Per head: hidden units (0 = linear), epochs, L2, class-balanced weights.
HYPERPARAMETERS: dict[str, dict] = {
    "domain": {"hidden": 256, "epochs": 30, "l2": 1e-4, "balanced": False},
    "complexity": {"hidden": 0, "epochs": 100, "l2": 1e-4, "balanced": True},
    "safety": {"hidden": 256, "epochs": 40, "l2": 1e-4, "balanced": True},
    "moderation": {"hidden": 0, "epochs": 200, "l2": 1e-3, "balanced": True},
}
#: The safety detectors' thresholds keep the out-of-fold share of benign texts on which any of
#: them fires at or below this on every benign source of the train split; their watch levels (a
#: suspicious turn, which counts toward a session's escalation) at or below ``WATCH_FPR``.
SAFETY_TARGET_FPR = 0.01
WATCH_FPR = 0.05
#: Benign sources whose texts read like a tool's answer (quiz content, excerpts), on which the
#: injection threshold is calibrated as read in a tool result.
DOCUMENT_SOURCES = ("mmlu_pro", "excerpt:")
#: Benign rows we made by appending junk tokens: they teach the head that junk alone is no
#: attack, but no user sends them, so they do not set the operating point.
SYNTHETIC = ("suffixed:",)
#: How calibration texts are read: as the default policy's scan reads them.
SCAN = ScanConfig()
FOLDS = 3
#: A benign source calibrates a threshold only with this many train rows: fewer cannot pin a
#: 1% tail (it would be the source's maximum). Smaller sources still train the head.
CALIBRATION_MIN_ROWS = 100


def fit(task: Task, x: np.ndarray, rows: np.ndarray) -> Head:
    """A head of ``task`` trained on ``rows`` with the shipped hyperparameters."""
    params = dict(HYPERPARAMETERS[task.name])
    balanced = params.pop("balanced")
    targets = task.targets[rows]
    weights = balanced_weights(targets) if balanced and task.kind == "softmax" else None
    positive = positive_weights(targets) if balanced and task.kind == "sigmoid" else None
    return train_head(
        task.name,
        task.kind,  # type: ignore[arg-type]
        task.labels,
        x[rows],
        targets,
        sample_weight=weights,
        positive_weight=positive,
        **params,
    )


def positive_weights(targets: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """Per label, negatives / positives among known rows (capped): rare labels count more."""
    positives = np.nansum(targets, axis=0)
    known = np.sum(~np.isnan(targets), axis=0)
    return np.clip((known - positives) / np.maximum(positives, 1.0), 1.0, cap)


def out_of_fold(task: Task, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train rows and their predictions from heads that did not see them (3 folds)."""
    train = task.rows("train")
    folds = np.array([hash_fold(task, i) for i in train])
    probs = np.zeros((len(train), len(task.labels)))
    for k in range(FOLDS):
        held = folds == k
        head = fit(task, x, train[~held])
        probs[held] = head.predict(x[train[held]])
    return train, probs


def moderation_thresholds(task: Task, x: np.ndarray) -> dict[str, float]:
    """Per category, the threshold that maximises out-of-fold F1 on the train rows."""
    train, probs = out_of_fold(task, x)
    targets = task.targets[train]
    thresholds = {}
    for i, label in enumerate(task.labels):
        known = ~np.isnan(targets[:, i])
        actual = targets[known, i] == 1
        best = max(
            np.arange(0.1, 0.95, 0.05),
            key=lambda t: heads_eval.precision_recall(probs[known, i] >= t, actual)["f1"],
        )
        thresholds[label] = round(float(best), 2)
    return thresholds


def safety_thresholds(task: Task, x: np.ndarray, cache: EmbeddingCache) -> dict[str, dict]:
    """Per detector, the lowest threshold (and watch level) whose out-of-fold false-positive
    rate on every benign train source is within target, over the windows the screener reads;
    injection also as read in a tool result, on benign texts that read like one.
    No upper clamp (a floor of 0.5): a threshold near 1 says the head cannot separate that
    source at the target."""
    train = task.rows("train")
    folds = np.array([hash_fold(task, i) for i in train])
    sources = np.asarray(task.sources)[train]
    benign = task.targets[train] == 0
    counts = {s: int(np.sum(benign & (sources == s))) for s in set(sources[benign].tolist())}
    calibrating = benign & np.isin(
        sources, [s for s, n in counts.items() if n >= CALIBRATION_MIN_ROWS]
    )
    rows = np.flatnonzero(calibrating)
    documents = np.array([s.startswith(DOCUMENT_SOURCES) for s in sources])
    heads = [fit(task, x, train[folds != k]) for k in range(FOLDS)]
    # jailbreak, injection, harmful as read in a user turn (every benign source); injection as
    # read in a tool result (benign text that reads like a document, not a request)
    top = np.zeros((len(train), 4))
    for columns, size, overlap, limit, mine in (
        ([0, 1, 2], None, 0.25, SCAN.max_windows + 1, rows),
        ([3], SCAN.data_window_tokens, 0.5, SCAN.data_windows, rows[documents[rows]]),
    ):
        windows = {
            r: cache.encoder.windows(task.texts[train[r]], limit, size, overlap, size is None)[0]
            for r in mine
        }
        # as a user turn, a text's first window is its head and tail: its embedding in x
        whole = size is None
        rest = [w for ws in windows.values() for w in (ws[1:] if whole else ws)]
        encoded = iter(cache.embed_ids(rest, "calibration windows") if rest else [])
        vectors = np.stack(
            [
                x[train[r]] if whole and j == 0 else next(encoded)
                for r, ws in windows.items()
                for j in range(len(ws))
            ]
        )
        for k, head in enumerate(heads):
            scores = detector_scores(head.predict(vectors), task.labels)
            at = 0
            for r, ws in windows.items():
                if folds[r] == k:
                    top[r, columns] = scores[at : at + len(ws), columns].max(axis=0)
                at += len(ws)
    as_user = [top[calibrating & (sources == s), :3] for s in counts if not s.startswith(SYNTHETIC)]
    as_tool = [top[calibrating & documents & (sources == s), 3:] for s in counts]

    def levels(fpr: float) -> dict[str, float]:
        """A text arrives as a user turn or as a tool result: a budget for each reading."""
        jailbreak, injection, harmful = joint_levels(as_user, fpr)
        (in_tool,) = joint_levels(as_tool, fpr)
        return {"jailbreak": jailbreak, "injection": max(injection, in_tool), "harmful": harmful}

    return {"thresholds": levels(SAFETY_TARGET_FPR), "watch_thresholds": levels(WATCH_FPR)}


def joint_levels(per_source: list[np.ndarray], target: float) -> list[float]:
    """Per column (detector reading) the threshold at one common tail share ``q`` of every
    source's scores, with ``q`` the largest on a fine grid for which the share of texts on
    which *any* column fires stays within ``target`` on every source (one false-positive
    budget for all)."""
    sources = [s for s in per_source if len(s)]
    columns = range(sources[0].shape[1])
    best = None
    for q in np.arange(0.0005, target + 1e-9, 0.0005):
        levels = np.array(
            [max(0.5, *(float(np.quantile(s[:, c], 1 - q)) for s in sources)) for c in columns]
        )
        if max(float((s >= levels).any(axis=1).mean()) for s in sources) > target:
            break
        best = levels
    if best is None:  # even the strictest grid point exceeds the budget: the sources' maxima
        best = np.array([max(0.5, *(float(s[:, c].max()) for s in sources)) for c in columns])
    return [round(float(t), 6) for t in best]


def hash_fold(task: Task, row: int) -> int:
    """Fold of a train row, from its group (deterministic): variants of one prompt share it,
    or the out-of-fold scores of a prompt would come from a head that saw it reworded."""
    return hashlib.sha256(task.group(row).encode("utf-8", "replace")).digest()[0] % FOLDS


def evaluate(head: Head, task: Task, x: np.ndarray) -> dict:
    if task.name == "complexity":
        return heads_eval.evaluate_complexity(head, task, x)
    if task.name == "safety":
        return heads_eval.evaluate_safety_head(head, task, x, head.meta["thresholds"])
    if task.name == "moderation":
        return heads_eval.evaluate_moderation(head, task, x, head.meta["thresholds"])
    return heads_eval.evaluate_softmax(head, task, x)


def train(name: str, root: Path, cache: EmbeddingCache, out_dir: Path = TRAINED_DIR) -> Head:
    started = time.perf_counter()
    print(f"[{name}] loading data from {root}", file=sys.stderr)
    task = TASKS[name](root)
    x = cache.embed(task.texts, name)
    train_rows = task.rows("train")
    print(
        f"[{name}] {len(train_rows)} train rows, {len(task.rows('eval'))} eval rows; fitting",
        file=sys.stderr,
    )
    head = fit(task, x, train_rows)
    meta = {k: v for k, v in task.meta.items() if k not in ("strong_accuracy", "weak_accuracy")}
    if name == "safety":
        meta |= safety_thresholds(task, x, cache)
    if name == "moderation":
        meta["thresholds"] = moderation_thresholds(task, x)
    head.meta = {
        **meta,
        "version": datetime.now(UTC).strftime("%Y%m%d"),
        "encoder": cache.encoder.name,
        "max_tokens": cache.encoder.max_tokens,
        "hyperparameters": HYPERPARAMETERS[name],
        "train_rows": len(train_rows),
    }
    metrics = evaluate(head, task, x)
    head.meta["eval"] = metrics
    head.save(out_dir / f"{name}.npz")
    (out_dir / f"{name}.md").write_text(model_card(head, task, metrics))
    print(
        f"[{name}] done in {time.perf_counter() - started:.0f} s -> {out_dir / name}.npz",
        file=sys.stderr,
    )
    return head


def operating_point(head: Head) -> str:
    """The safety head's thresholds and how they were chosen (other heads: nothing)."""
    if "watch_thresholds" not in head.meta:
        return ""
    return (
        f"- **Operating point**: thresholds {head.meta['thresholds']} keep the out-of-fold share "
        f"of benign texts on which any detector fires at or below {SAFETY_TARGET_FPR:.0%} on "
        f"every benign train source of {CALIBRATION_MIN_ROWS}+ rows, read as the screener "
        "reads them (jailbreak and harmful over user-turn windows, injection over short "
        "tool-result windows as injection + jailbreak probability); watch levels "
        f"{head.meta['watch_thresholds']} at {WATCH_FPR:.0%} (a suspicious turn). No upper "
        "clamp (a floor of 0.5).\n"
        "- **Metrics below**: the head alone on each eval row's head+tail embedding, as a "
        "user turn; the shipped decision (every window, every detector, PII, moderation, "
        "sessions) and leave-one-family-out recall are `wrp eval safety`'s.\n"
    )


def model_card(head: Head, task: Task, metrics: dict) -> str:
    sources = sorted(set(task.sources))
    counts = {
        split: {
            s: int(np.sum((task.splits == split) & (np.asarray(task.sources) == s)))
            for s in sources
        }
        for split in ("train", "eval")
    }
    layers = head.meta["hyperparameters"]
    dim = head.weights[0].shape[0]
    shape = (
        f"{dim} -> {layers['hidden']} ReLU -> {len(head.labels)}"
        if layers["hidden"]
        else f"{dim} -> {len(head.labels)}"
    )
    evaluated_by = "safety" if head.name in ("safety", "moderation") else "signals"
    labels = ", ".join(head.labels)
    return f"""# Model card: {head.name} head ({head.version})

- **What**: {task.kind} head over the {head.meta["encoder"]} sentence embedding
  (token budget {head.meta["max_tokens"]}, head + tail), shape {shape}; labels: {labels}.
- **Data** (`../shared/data`, read in place): sources {", ".join(sources)}.
- **Split**: deterministic by sha256 of a stable row key (`pipeline/evaluation/split.py`), 20% eval;
  rows per source: train {counts["train"]}, eval {counts["eval"]}. Nothing was tuned on eval rows.
- **Training**: mini-batch Adam, cross-entropy, {json.dumps(layers)}.
- **Reproduce**: `wrp models train {head.name}` (metrics: `wrp eval {evaluated_by}`).
{operating_point(head)}
## Metrics on the eval split

```json
{json.dumps(metrics, indent=2)}
```
"""
