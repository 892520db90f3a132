"""A labelled index for the knn strategy and the predictor's knn variant: requests'
embeddings (N x D, L2-normalised), how each model answered them (N x M, 0..1, NaN = unknown) and
the similarity-weighted estimate of the k nearest (see ``strategies/knn.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

#: Requests scored at once (bounds the similarity matrix: BATCH x indexed requests).
BATCH = 1024


@dataclass(frozen=True)
class KnnIndex:
    embeddings: np.ndarray  # N x D float32, L2-normalised
    labels: np.ndarray  # N x M float32, NaN = unknown
    models: tuple[str, ...]

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            embeddings=self.embeddings.astype(np.float16),
            labels=self.labels.astype(np.float16),
            models=np.array(self.models),
        )

    def estimates(
        self, embeddings: np.ndarray, prior: np.ndarray, k: int, prior_weight: float
    ) -> np.ndarray:
        """q_m(x) of every row of ``embeddings`` (n x D) and every index model (n x M);
        ``prior`` holds E[q_m] per index model (the estimate where no neighbour weighs)."""
        embeddings = np.atleast_2d(embeddings).astype(np.float32)
        out = np.empty((len(embeddings), len(self.models)))
        for start in range(0, len(embeddings), BATCH):
            sims = embeddings[start : start + BATCH] @ self.embeddings.T
            out[start : start + BATCH] = self._estimates(sims, prior, k, prior_weight)
        return out

    def _estimates(
        self, sims: np.ndarray, prior: np.ndarray, k: int, prior_weight: float
    ) -> np.ndarray:
        out = np.empty((len(sims), len(self.models)))
        shared: tuple[np.ndarray, np.ndarray] | None = None
        for column in range(len(self.models)):
            labels = self.labels[:, column]
            known = ~np.isnan(labels)
            if known.all():
                shared = shared or _nearest(sims, k)
                rows, weights = shared
            else:
                rows, weights = _nearest(np.where(known, sims, -np.inf), min(k, int(known.sum())))
            values = np.nan_to_num(labels[rows])
            total = weights.sum(axis=1) + prior_weight
            out[:, column] = np.where(
                total > 0,
                ((weights * values).sum(axis=1) + prior_weight * prior[column])
                / np.maximum(total, 1e-12),
                prior[column],
            )
        return out

    def estimate(
        self, embedding: np.ndarray, priors: dict[str, float], k: int, prior_weight: float
    ) -> dict[str, float]:
        """q_m(x) for every model of ``priors`` (models the index lacks keep their prior)."""
        prior = np.array([priors.get(model, 0.5) for model in self.models])
        row = self.estimates(embedding[None, :], prior, k, prior_weight)[0]
        known = dict(zip(self.models, row.tolist(), strict=True))
        return {model: known.get(model, value) for model, value in priors.items()}


def _nearest(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``sims``, the columns of its k largest entries and their weights max(sim, 0)
    (weight 0 for columns masked with -inf)."""
    k = min(k, sims.shape[1])
    if k == 0:
        return np.zeros((len(sims), 0), dtype=int), np.zeros((len(sims), 0))
    rows = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return rows, np.maximum(np.take_along_axis(sims, rows, axis=1), 0.0)


@lru_cache(maxsize=4)
def _load(path: Path, mtime: float) -> KnnIndex:
    with np.load(path) as data:
        return KnnIndex(
            embeddings=data["embeddings"].astype(np.float32),
            labels=data["labels"].astype(np.float32),
            models=tuple(str(m) for m in data["models"]),
        )


def load_index(path: Path) -> KnnIndex:
    """The index at ``path``, read once per file version."""
    return _load(path, path.stat().st_mtime)
