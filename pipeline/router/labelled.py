"""Requests labelled with how each model did: the input of ``wrp router index``, ``wrp router
train`` and ``wrp eval routing --data``.

The input is JSON lines, one labelled request each::

    {"text": "the user's question", "labels": {"wrp-small-8b": 1, "wrp-large-70b": 0.8},
     "cost": {"wrp-small-8b": 0.0004, "wrp-large-70b": 0.003},
     "tokens": {"wrp-small-8b": [120, 310], "wrp-large-70b": [120, 250]}}

``prompt`` may stand for ``text`` and ``scores`` for ``labels``. A label is how well the model
answered, from 0 (badly) to 1 (well): 0/1 correctness or a graded score (a judge's mark scaled to
[0, 1]); a model missing from a line is unknown for it. ``cost`` (USD of that request) and
``tokens`` ([prompt, completion]) are optional, per model. A label outside [0, 1], a negative
cost or a malformed line is refused with its line, never dropped. Texts are embedded with the
same encoder and token budget as the signals stage, so the index matches the request embeddings
the router compares it with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.models.encoder import Encoder
from pipeline.router.neighbours import KnnIndex


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the line."""


@dataclass
class Labelled:
    texts: list[str]
    labels: list[dict[str, float]]
    costs: list[dict[str, float]]  # USD per request, per model; empty dict = unknown
    tokens: list[dict[str, tuple[int, int]]]  # [prompt, completion] per model

    @property
    def models(self) -> list[str]:
        return sorted({m for row in self.labels for m in row})

    def matrix(self, rows: list[dict[str, Any]], models: list[str]) -> np.ndarray:
        """Rows x models of ``rows``' values (NaN where a row has none)."""
        out = np.full((len(rows), len(models)), np.nan)
        for i, row in enumerate(rows):
            for j, model in enumerate(models):
                if model in row:
                    out[i, j] = row[model]
        return out


def _number(value: Any, low: float, high: float = float("inf")) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def _row(path: Path, number: int, line: str) -> tuple[str, dict, dict, dict]:
    try:
        row = json.loads(line)
        text = row.get("text", row.get("prompt"))
        marks = row.get("labels", row.get("scores"))
        costs, tokens = row.get("cost", {}), row.get("tokens", {})
        if not isinstance(text, str) or not isinstance(marks, dict) or not marks:
            raise TypeError
        if not isinstance(costs, dict) or not isinstance(tokens, dict):
            raise TypeError
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise LabelsError(
            f'{path}:{number}: expected {{"text": str, "labels": {{model: score, ...}}}} '
            "with scores from 0 to 1 (optional: cost, tokens per model)"
        ) from None
    bad = {m: v for m, v in marks.items() if not _number(v, 0.0, 1.0)}
    if bad:
        raise LabelsError(f"{path}:{number}: labels must be numbers from 0 to 1, got {bad}")
    bad = {m: v for m, v in costs.items() if not _number(v, 0.0)}
    if bad:
        raise LabelsError(f"{path}:{number}: costs must be USD amounts >= 0, got {bad}")
    bad = {
        m: v
        for m, v in tokens.items()
        if not isinstance(v, list) or len(v) != 2 or not all(_number(n, 0) for n in v)
    }
    if bad:
        raise LabelsError(f"{path}:{number}: tokens must be [prompt, completion], got {bad}")
    return text, marks, costs, tokens


def read_labelled(path: Path) -> Labelled:
    data = Labelled([], [], [], [])
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        text, marks, costs, tokens = _row(path, number, line)
        data.texts.append(text)
        data.labels.append({str(m): float(v) for m, v in marks.items()})
        data.costs.append({str(m): float(v) for m, v in costs.items()})
        data.tokens.append({str(m): (int(v[0]), int(v[1])) for m, v in tokens.items()})
    if not data.texts:
        raise LabelsError(f"{path}: no labelled requests")
    return data


def build_index(data: Labelled, encoder: Encoder) -> KnnIndex:
    models = data.models
    matrix = data.matrix(data.labels, models).astype(np.float32)
    return KnnIndex(encoder.encode(data.texts).astype(np.float32), matrix, tuple(models))


def from_analytics(columns: list[str], rows: list[list[Any]]) -> tuple[Labelled, int]:
    """Labelled requests from the ``labelled`` analytics query, and how many stored rows could
    not be read (skipped). Each request's routing text as stored (scrubbed) is labelled with its
    mean feedback score for the model that served it, or 0 when the call failed without
    feedback; repeats of a text served by several models become one request labelled for each
    (the mean where a model served it more than once)."""
    from pipeline.envelope import RequestSection
    from pipeline.workload.structural import routing_text

    merged: dict[str, dict[str, list[tuple[float, float, int, int]]]] = {}
    skipped = 0
    for values in rows:
        row = dict(zip(columns, values, strict=True))
        try:
            # the stored envelope leaves the embedding out: read its request only
            body = RequestSection.model_validate(json.loads(row["envelope"])["request"]).body
            text = routing_text(body) if body is not None and body.messages else ""
        except (ValueError, KeyError, TypeError):
            text = ""
        if not text:
            skipped += 1
            continue
        score = min(max(float(row["score"]) if row["feedback"] else 0.0, 0.0), 1.0)
        merged.setdefault(text, {}).setdefault(str(row["model"]), []).append(
            (
                score,
                float(row["cost_usd"]),
                int(row["prompt_tokens"]),
                int(row["completion_tokens"]),
            )
        )
    data = Labelled([], [], [], [])
    for text, by_model in merged.items():
        data.texts.append(text)
        data.labels.append({m: float(np.mean([v[0] for v in vs])) for m, vs in by_model.items()})
        data.costs.append({m: float(np.mean([v[1] for v in vs])) for m, vs in by_model.items()})
        data.tokens.append(
            {
                m: (int(np.mean([v[2] for v in vs])), int(np.mean([v[3] for v in vs])))
                for m, vs in by_model.items()
            }
        )
    if not data.texts:
        raise LabelsError(
            "no request in analytics has feedback or a failed outcome yet: send feedback "
            "(wrp feedback, POST /v1/feedback) and try again"
        )
    return data, skipped
