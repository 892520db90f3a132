"""Per-model probability of a good answer from the request itself (``router.predictor``).

    s_m(x) = x . w_m + c_m                      (linear and low-rank variants)
    s_m(x) = s_r(x) + d_m * tanh(z_m(x) / 2)    (pairwise: reference r by ridge, z_m(x) the
                                                 logit of m beating r, d_m how often they differ)
    s_m(x) = kNN estimate of the k nearest labelled requests   (knn variant)
    p_m(x) = sigmoid(a_m * s_m(x) + b_m)        (per-model Platt calibration, out of fold)

``x`` is the request's embedding followed by one-hots of its predicted domain and complexity.
``wrp router train`` fits every variant with cross-validation on the labelled requests, keeps
the one with the best held-out Brier score and calibrates it on its out-of-fold scores (see
``pipeline/evaluation/predictor_training.py``). It also records, on the same held-out rows and
for a range of cost weights, whether routing on p_m(x) beat always sending every request to one
model; where it did not, :meth:`SuccessPredictor.trusted` is false and the router uses the
per-model base rates instead, i.e. routes like the best single candidate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.models.heads import sigmoid
from pipeline.router.neighbours import KnnIndex
from pipeline.vocabulary import COMPLEXITY, DOMAINS

VARIANTS = ("linear", "low_rank", "pairwise", "knn")


def features(embeddings: np.ndarray, domains: list[str], complexities: list[str]) -> np.ndarray:
    """Rows of [embedding, one-hot domain, one-hot complexity] (unknown labels: all zero)."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    extra = np.zeros((len(embeddings), len(DOMAINS) + len(COMPLEXITY)), dtype=np.float32)
    for row, (domain, complexity) in enumerate(zip(domains, complexities, strict=True)):
        if domain in DOMAINS:
            extra[row, DOMAINS.index(domain)] = 1.0
        if complexity in COMPLEXITY:
            extra[row, len(DOMAINS) + COMPLEXITY.index(complexity)] = 1.0
    return np.hstack([embeddings, extra])


#: The router must beat the best single model by this many standard errors of the paired
#: per-request difference (one-sided 95%) to be trusted at a cost weight.
CONFIDENCE_Z = 1.645


@dataclass(frozen=True)
class GuardPoint:
    """Held-out evidence at one cost weight: mean utility (quality - lambda * cost) of routing
    on the predictor against the best single model, and the standard error of the difference."""

    cost_weight: float
    router: float
    best_single: float
    model: str
    stderr: float = 0.0

    @property
    def beats(self) -> bool:
        return self.router - self.best_single > CONFIDENCE_Z * self.stderr


@dataclass(frozen=True)
class SuccessPredictor:
    variant: str
    models: tuple[str, ...]
    coef: np.ndarray  # F x M (linear family; empty for knn)
    intercept: np.ndarray  # M
    calibration: np.ndarray  # M x 2: a, b
    base: np.ndarray  # M: mean label on the training rows
    guard: tuple[GuardPoint, ...] = ()
    #: M: what routing like the best single model uses (the means on the rows the guard
    #: compared; the base rates when it had none)
    fallback: np.ndarray | None = None
    reference: int = -1  # pairwise: the reference model's position
    spread: np.ndarray | None = None  # pairwise: M, how often each model's label differs
    neighbours: KnnIndex | None = None
    k: int = 0
    prior_weight: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated s_m(x), shape (rows, M)."""
        x = np.atleast_2d(x)
        if self.neighbours is not None:
            dims = self.neighbours.embeddings.shape[1]
            return self.neighbours.estimates(x[:, :dims], self.base, self.k, self.prior_weight)
        linear = x @ self.coef + self.intercept
        if self.spread is None:
            return linear
        ref = self.reference
        out = linear[:, [ref]] + self.spread * np.tanh(linear / 2)
        out[:, ref] = linear[:, ref]
        return out

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Calibrated p_m(x), shape (rows, M)."""
        a, b = self.calibration[:, 0], self.calibration[:, 1]
        return sigmoid(a * self.scores(x) + b)

    def estimate(self, embedding: np.ndarray, domain: str, complexity: str) -> dict[str, float]:
        p = self.probabilities(features(embedding[None, :], [domain], [complexity]))[0]
        return dict(zip(self.models, p.tolist(), strict=True))

    def fallback_rates(self) -> dict[str, float]:
        rates = self.base if self.fallback is None else self.fallback
        return dict(zip(self.models, rates.tolist(), strict=True))

    def reads(self, embedding: np.ndarray) -> bool:
        """Whether ``embedding`` has the width the predictor was trained on."""
        if self.neighbours is not None:
            return self.neighbours.embeddings.shape[1] == len(embedding)
        return self.coef.shape[0] == len(embedding) + len(DOMAINS) + len(COMPLEXITY)

    def guard_at(self, cost_weight: float) -> GuardPoint | None:
        """The held-out evidence at the cost weight nearest ``cost_weight`` (log scale; 0 and
        below match the smallest), None without evidence."""
        if not self.guard:
            return None
        return min(self.guard, key=lambda g: abs(_log(g.cost_weight) - _log(cost_weight)))

    def trusted(self, cost_weight: float) -> bool:
        """Whether routing on p_m(x) beat the best single model on held-out rows near
        ``cost_weight``; true when there is no such evidence."""
        point = self.guard_at(cost_weight)
        return point is None or point.beats

    def save(self, path: Path) -> None:
        header = {
            "variant": self.variant,
            "models": list(self.models),
            "guard": [g.__dict__ for g in self.guard],
            "k": self.k,
            "reference": self.reference,
            "prior_weight": self.prior_weight,
            "meta": self.meta,
        }
        arrays = {
            "coef": self.coef.astype(np.float32),
            "intercept": self.intercept.astype(np.float32),
            "calibration": self.calibration.astype(np.float64),
            "base": self.base.astype(np.float64),
        }
        if self.spread is not None:
            arrays["spread"] = self.spread.astype(np.float64)
        if self.fallback is not None:
            arrays["fallback"] = self.fallback.astype(np.float64)
        if self.neighbours is not None:
            arrays["embeddings"] = self.neighbours.embeddings.astype(np.float16)
            arrays["labels"] = self.neighbours.labels.astype(np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, header=np.array(json.dumps(header)), **arrays)


def _log(cost_weight: float) -> float:
    return math.log10(max(cost_weight, 1e-9))


@lru_cache(maxsize=4)
def _load(path: Path, mtime: float) -> SuccessPredictor:
    with np.load(path) as data:
        header = json.loads(str(data["header"]))
        models = tuple(header["models"])
        neighbours = None
        if "embeddings" in data.files:
            neighbours = KnnIndex(
                data["embeddings"].astype(np.float32), data["labels"].astype(np.float32), models
            )
        return SuccessPredictor(
            variant=header["variant"],
            models=models,
            coef=data["coef"].astype(np.float32),
            intercept=data["intercept"].astype(np.float32),
            calibration=data["calibration"],
            base=data["base"],
            guard=tuple(GuardPoint(**g) for g in header["guard"]),
            reference=header["reference"],
            spread=data["spread"] if "spread" in data.files else None,
            fallback=data["fallback"] if "fallback" in data.files else None,
            neighbours=neighbours,
            k=header["k"],
            prior_weight=header["prior_weight"],
            meta=header["meta"],
        )


def load_predictor(path: Path) -> SuccessPredictor:
    """The predictor at ``path``, read once per file version."""
    return _load(path, path.stat().st_mtime)
