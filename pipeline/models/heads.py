"""Small classifier heads on the shared sentence embedding, trained and served with numpy.

A head is ``x -> [ReLU(x W1 + b1)] -> z = h W2 + b2`` followed by softmax (one label of many)
or sigmoid (any number of labels). Training is mini-batch Adam on cross-entropy with L2 weight
decay and optional class weights; it is deterministic for a given seed. A head is saved as one
``.npz`` holding its weights, labels and metadata (version, encoder, token budget, metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Kind = Literal["softmax", "sigmoid"]


@dataclass
class Head:
    name: str
    kind: Kind
    labels: list[str]
    weights: list[np.ndarray]  # [W2, b2] or [W1, b1, W2, b2]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.name}@{self.meta.get('version', 'untrained')}"

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x
        if len(self.weights) == 4:
            h = np.maximum(h @ self.weights[0] + self.weights[1], 0.0)
        return h @ self.weights[-2] + self.weights[-1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities, shape (n, labels): rows sum to 1 for softmax heads."""
        z = self.logits(np.asarray(x, dtype=np.float32))
        if self.kind == "sigmoid":
            return sigmoid(z)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"name": self.name, "kind": self.kind, "labels": self.labels, "meta": self.meta}
        arrays = {f"w{i}": w.astype(np.float32) for i, w in enumerate(self.weights)}
        np.savez_compressed(path, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: Path) -> Head:
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            weights = [data[f"w{i}"] for i in range(len(data.files) - 1)]
        return cls(header["name"], header["kind"], header["labels"], weights, header["meta"])


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z) without overflow for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _init(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    return (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32)


def train_head(
    name: str,
    kind: Kind,
    labels: list[str],
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: int = 0,
    epochs: int = 60,
    batch: int = 128,
    lr: float = 2e-3,
    l2: float = 1e-4,
    sample_weight: np.ndarray | None = None,
    positive_weight: np.ndarray | None = None,
    seed: int = 0,
) -> Head:
    """Fit a head. ``y`` is class indices (softmax) or a 0/1 matrix with NaN = unknown (sigmoid).

    ``positive_weight`` (sigmoid only, one per label) scales the loss of positive examples.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    n, d = x.shape
    k = len(labels)
    if kind == "softmax":
        target = np.eye(k, dtype=np.float32)[np.asarray(y, dtype=int)]
        known = np.ones_like(target)
    else:
        target = np.nan_to_num(np.asarray(y, dtype=np.float32))
        known = (~np.isnan(np.asarray(y, dtype=np.float32))).astype(np.float32)
        if positive_weight is not None:
            known = known * np.where(target > 0, positive_weight[None, :], 1.0)
    weight = np.ones(n, np.float32) if sample_weight is None else sample_weight.astype(np.float32)
    shapes = [(d, hidden), (hidden,), (hidden, k), (k,)] if hidden else [(d, k), (k,)]
    params = [_init(rng, s[0], s[1]) if len(s) == 2 else np.zeros(s, np.float32) for s in shapes]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(n), max(1, n // batch)):
            xb, tb, kb, wb = x[idx], target[idx], known[idx], weight[idx, None]
            h = np.maximum(xb @ params[0] + params[1], 0.0) if hidden else xb
            z = h @ params[-2] + params[-1]
            if kind == "softmax":
                z = z - z.max(axis=1, keepdims=True)
                p = np.exp(z)
                p /= p.sum(axis=1, keepdims=True)
            else:
                p = sigmoid(z)
            dz = (p - tb) * kb * wb / len(idx)
            grads = [h.T @ dz, dz.sum(axis=0)]
            if hidden:
                dh = (dz @ params[2].T) * (h > 0)
                grads = [xb.T @ dh, dh.sum(axis=0), *grads]
            step += 1
            for i, (p_, g) in enumerate(zip(params, grads, strict=True)):
                if p_.ndim == 2:
                    g = g + l2 * p_
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                m_hat = m[i] / (1 - 0.9**step)
                v_hat = v[i] / (1 - 0.999**step)
                params[i] = p_ - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return Head(name, kind, labels, params)


def balanced_weights(classes: np.ndarray) -> np.ndarray:
    """Per-row weights that give every class the same total weight (mean weight 1)."""
    values, counts = np.unique(classes, return_counts=True)
    per_class = dict(
        zip(values.tolist(), (len(classes) / (len(values) * counts)).tolist(), strict=True)
    )
    return np.array([per_class[c] for c in classes.tolist()], dtype=np.float32)


TRAINED_DIR = Path(__file__).resolve().parent / "trained"


class HeadMissing(RuntimeError):
    pass


def load_trained(
    name: str, encoder_name: str, max_tokens: int, directory: Path = TRAINED_DIR
) -> Head:
    """The committed head ``name``; refuses a head trained on other embeddings (another encoder
    or another token budget)."""
    path = directory / f"{name}.npz"
    if not path.is_file():
        raise HeadMissing(f"no trained {name} head at {path}: run `wrp models train {name}`")
    head = Head.load(path)
    trained_on = (head.meta.get("encoder"), head.meta.get("max_tokens"))
    if trained_on != (encoder_name, max_tokens):
        raise HeadMissing(
            f"the {name} head was trained on encoder {trained_on[0]!r} with {trained_on[1]} "
            f"tokens but the configured encoder is {encoder_name!r} with {max_tokens}: run "
            f"`wrp models train {name}` with these settings, or change them back"
        )
    return head
