"""knn: per-request quality from labelled neighbours, m* = argmax_m q_m(x) - lambda * c_m.

    q_m(x) = (sum_{i in N_k(x)} w_i * y_im  +  n0 * E[q_m]) / (sum_{i in N_k(x)} w_i  +  n0)

``N_k(x)`` are the k labelled requests most cosine-similar to the request's embedding x,
``w_i = max(cos(x, x_i), 0)``, ``y_im`` whether model m answered request i well (neighbours
without a label for m are skipped), ``E[q_m]`` the arm's posterior mean (card prior plus
feedback, see ``base``) and ``n0`` the policy's ``router.knn.prior_weight``. It needs no
online evidence, so it routes well from the first request (cold start); feedback still moves it
through ``E[q_m]``. The index is an ``.npz`` of ``embeddings`` (N x D, L2-normalised),
``labels`` (N x M, 1/0, NaN = unknown) and ``models`` (M names); without one the estimate is
``E[q_m]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.router.strategies.base import Selection, SelectionContext, best, rounded


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

    def neighbours(self, embedding: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indexes of the k most similar labelled requests and their weights."""
        sims = self.embeddings @ embedding.astype(np.float32)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        return top, np.maximum(sims[top], 0.0)

    def estimate(
        self, embedding: np.ndarray, priors: dict[str, float], k: int, prior_weight: float
    ) -> dict[str, float]:
        """q_m(x) for every model of ``priors`` (models the index lacks keep their prior)."""
        rows, weights = self.neighbours(embedding, k)
        estimates = dict(priors)
        for model, prior in priors.items():
            if model not in self.models:
                continue
            labels = self.labels[rows, self.models.index(model)]
            known = ~np.isnan(labels)
            total = float(weights[known].sum()) + prior_weight
            if total > 0:
                estimates[model] = (
                    float(weights[known] @ labels[known]) + prior_weight * prior
                ) / total
        return estimates


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


def select(ctx: SelectionContext) -> Selection:
    config = ctx.policy.router.knn
    index = load_index(config.index) if config.index is not None else None
    quality = {card.name: ctx.mean(card) for card in ctx.candidates}
    if index is not None and ctx.embedding is not None:
        quality = index.estimate(ctx.embedding, quality, config.k, config.prior_weight)
    scores = {card.name: ctx.utility(card, quality[card.name]) for card in ctx.candidates}
    choice = best(ctx.candidates, scores)
    return Selection(choice, choice, rounded(scores))
