"""Jailbreak score: highest cosine similarity to the policy's example attacks."""

from __future__ import annotations

import numpy as np


class ExampleSimilarity:
    def __init__(self, example_embeddings: np.ndarray) -> None:
        self.examples = example_embeddings

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Score in [0, 1] per row: max cosine similarity, clipped at 0."""
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.float32)
        return np.clip((embeddings @ self.examples.T).max(axis=1), 0.0, 1.0)
