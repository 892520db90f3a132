"""Domain by nearest centroid of the policy's example prompts (replaced by trained heads later)."""

from __future__ import annotations

import numpy as np


class CentroidClassifier:
    """Cosine nearest-centroid over L2-normalised embeddings."""

    def __init__(self, labels: list[str], centroids: np.ndarray) -> None:
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        self.labels = labels
        self.centroids = centroids / np.clip(norms, 1e-12, None)

    @classmethod
    def from_examples(cls, examples: dict[str, np.ndarray]) -> CentroidClassifier:
        """``examples`` maps each label to the embeddings of its example prompts."""
        labels = sorted(examples)
        return cls(labels, np.stack([examples[label].mean(axis=0) for label in labels]))

    def classify(self, embeddings: np.ndarray) -> list[tuple[str, float]]:
        """(label, cosine similarity to its centroid) for each embedding row."""
        sims = embeddings @ self.centroids.T
        best = sims.argmax(axis=1)
        return [(self.labels[j], float(sims[i, j])) for i, j in enumerate(best)]
