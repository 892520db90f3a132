"""`wrp models train NAME`: fit a head on the train split, measure it on the eval split, and
write ``trained/NAME.npz`` with a model card ``trained/NAME.md``.

Thresholds are never chosen on eval rows: the jailbreak head's per-class thresholds and the
moderation head's per-category thresholds come from out-of-fold predictions on the train rows
(3 folds, by a hash of the text).
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

#: Per head: hidden units (0 = linear), epochs, L2, class-balanced weights.
HYPERPARAMETERS: dict[str, dict] = {
    "domain": {"hidden": 256, "epochs": 30, "l2": 1e-4, "balanced": False},
    "complexity": {"hidden": 0, "epochs": 100, "l2": 1e-4, "balanced": True},
    "jailbreak": {"hidden": 256, "epochs": 40, "l2": 1e-4, "balanced": True},
    "moderation": {"hidden": 0, "epochs": 200, "l2": 1e-3, "balanced": True},
}
#: The jailbreak threshold keeps out-of-fold false positives at or below this on every benign
#: source of the train split.
JAILBREAK_TARGET_FPR = 0.005
FOLDS = 3
#: A benign source calibrates a threshold only with this many train rows: fewer cannot pin a
#: 0.5% quantile (it would be the source's maximum). Smaller sources still train the head.
CALIBRATION_MIN_ROWS = 100


def _fit(task: Task, x: np.ndarray, rows: np.ndarray) -> Head:
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
        head = _fit(task, x, train[~held])
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


def jailbreak_thresholds(task: Task, x: np.ndarray) -> dict[str, float]:
    """Per risk class, the lowest threshold whose out-of-fold false-positive rate on every
    benign train source is within target (at least 0.5, at most 0.99)."""
    train, probs = out_of_fold(task, x)
    sources = np.asarray(task.sources)[train]
    benign = task.targets[train] == 0
    thresholds = {}
    for risk in heads_eval.RISK_CLASSES:
        scores = probs[:, task.labels.index(risk)]
        threshold = 0.5
        for source in set(sources[benign].tolist()):
            mine = scores[benign & (sources == source)]
            if len(mine) >= CALIBRATION_MIN_ROWS:
                threshold = max(threshold, float(np.quantile(mine, 1 - JAILBREAK_TARGET_FPR)))
        thresholds[risk] = round(min(threshold, 0.99), 4)
    return thresholds


def hash_fold(task: Task, row: int) -> int:
    """Fold of a train row, from its text (deterministic)."""
    return hashlib.sha256(task.texts[row].encode("utf-8", "replace")).digest()[0] % FOLDS


def evaluate(head: Head, task: Task, x: np.ndarray) -> dict:
    if task.name == "complexity":
        return heads_eval.evaluate_complexity(head, task, x)
    if task.name == "jailbreak":
        return heads_eval.evaluate_jailbreak(head, task, x, head.meta["thresholds"])
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
    head = _fit(task, x, train_rows)
    meta = {k: v for k, v in task.meta.items() if k not in ("strong_accuracy", "weak_accuracy")}
    if name == "jailbreak":
        meta["thresholds"] = jailbreak_thresholds(task, x)
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
    evaluated_by = "safety" if head.name in ("jailbreak", "moderation") else "signals"
    labels = ", ".join(head.labels)
    return f"""# Model card: {head.name} head ({head.version})

- **What**: {task.kind} head over the {head.meta["encoder"]} sentence embedding
  (token budget {head.meta["max_tokens"]}, head + tail), shape {shape}; labels: {labels}.
- **Data** (`../shared/data`, read in place): sources {", ".join(sources)}.
- **Split**: deterministic by sha256 of a stable row key (`pipeline/evaluation/split.py`), 20% eval;
  rows per source: train {counts["train"]}, eval {counts["eval"]}. Nothing was tuned on eval rows.
- **Training**: mini-batch Adam, cross-entropy, {json.dumps(layers)}.
- **Reproduce**: `wrp models train {head.name}` (metrics: `wrp eval {evaluated_by}`).

## Metrics on the eval split

```json
{json.dumps(metrics, indent=2)}
```
"""


def leave_one_source_out(head: Head, task: Task, x: np.ndarray) -> dict[str, dict]:
    """Recall on each attack source's eval rows by a head trained without that source at all
    (every other train row kept), at ``head``'s thresholds: how well detection generalises to
    an attack family it has never seen."""
    sources = np.asarray(task.sources)
    train, held_out = task.rows("train"), task.rows("eval")
    report = {}
    for source in sorted({s for s, t in zip(task.sources, task.targets, strict=True) if t}):
        rows = held_out[sources[held_out] == source]
        if not len(rows):
            continue
        blind = _fit(task, x, train[sources[train] != source])
        fired = heads_eval.risk_flags(blind, x[rows], head.meta["thresholds"]).any(axis=1)
        report[source] = {"rows": len(rows), "rate": round(float(fired.mean()), 4)}
    return report
