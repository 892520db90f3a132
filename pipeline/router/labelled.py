"""Build a kNN index (``router.knn.index``) from requests labelled with how each model did.

The input is JSON lines, one labelled request each::

    {"text": "the user's question", "labels": {"wrp-small-8b": 1, "wrp-large-70b": 1}}

A label is how well the model answered, from 0 (badly) to 1 (well): 0/1 correctness or a graded
score (a judge's mark scaled to [0, 1]); a model missing from a line is unknown for it. A label
outside [0, 1] or not a number is refused with its line, never dropped.
Texts are embedded with the same encoder and token budget as the signals stage, so the index
matches the request embeddings the router compares it with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.models.encoder import Encoder
from pipeline.router.strategies.knn import KnnIndex


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the line."""


def read_labelled(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    texts: list[str] = []
    labels: list[dict[str, float]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, marks = row["text"], row["labels"]
            if not isinstance(text, str) or not isinstance(marks, dict) or not marks:
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise LabelsError(
                f'{path}:{number}: expected {{"text": str, "labels": {{model: score, ...}}}} '
                "with scores from 0 to 1"
            ) from None
        bad = {
            m: v
            for m, v in marks.items()
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1
        }
        if bad:
            raise LabelsError(f"{path}:{number}: labels must be numbers from 0 to 1, got {bad}")
        labels.append({str(m): float(v) for m, v in marks.items()})
        texts.append(text)
    if not texts:
        raise LabelsError(f"{path}: no labelled requests")
    return texts, labels


def build_index(texts: list[str], labels: list[dict[str, float]], encoder: Encoder) -> KnnIndex:
    models = tuple(sorted({m for row in labels for m in row}))
    matrix = np.full((len(texts), len(models)), np.nan, dtype=np.float32)
    for i, row in enumerate(labels):
        for model, value in row.items():
            matrix[i, models.index(model)] = value
    return KnnIndex(encoder.encode(texts).astype(np.float32), matrix, models)
