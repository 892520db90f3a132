"""Precision and recall of the regex PII detectors on the Presidio synthetic data set.

The data (``presidio_synth_dataset_v2.json`` from presidio-research, under ../shared/data/pii)
is a list of rows ``{full_text, spans: [{entity_type, start_position, end_position}],
template_id}``. Rows made from one template share their wording, so the split is by template:
``split_of(str(template_id), EVAL_SHARE)``. The detectors were tuned on the train templates
only; the numbers to quote are the eval split's.

Matching rule: a predicted span is a true positive when it has the same entity type as a gold
span and overlaps it by at least one character; each gold span can be matched once, so a
second prediction on the same gold span is a false positive. Precision is true positives over
predictions, recall is matched gold spans over gold spans, both per entity type.

Run::

    python -m pipeline.evaluation.pii_eval [path/to/presidio_synth_dataset_v2.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from pipeline.evaluation.split import split_of
from pipeline.safety.pii import find_pii

DEFAULT_PATH = (
    Path(__file__).resolve().parents[3] / "shared/data/pii/presidio_synth_dataset_v2.json"
)
EVAL_SHARE = 0.3
# The Presidio entity types our detectors cover (SECRET has no gold labels in this set).
EVALUATED = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
)


def _counts(rows: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Per entity: true positives, predictions and gold spans over ``rows``."""
    counts = {e: {"tp": 0, "predicted": 0, "gold": 0} for e in EVALUATED}
    for row in rows:
        predicted = find_pii(row["full_text"], EVALUATED)
        for entity in EVALUATED:
            gold = [
                (s["start_position"], s["end_position"])
                for s in row["spans"]
                if s["entity_type"] == entity
            ]
            unmatched = list(gold)
            mine = [p for p in predicted if p.entity == entity]
            for p in mine:
                hit = next((g for g in unmatched if p.start < g[1] and g[0] < p.end), None)
                if hit is not None:
                    unmatched.remove(hit)
                    counts[entity]["tp"] += 1
            counts[entity]["predicted"] += len(mine)
            counts[entity]["gold"] += len(gold)
    return counts


def _scores(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for entity, c in counts.items():
        precision = c["tp"] / c["predicted"] if c["predicted"] else 0.0
        recall = c["tp"] / c["gold"] if c["gold"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[entity] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": c["gold"],
            "predicted": c["predicted"],
        }
    return out


def load_rows(path: Path = DEFAULT_PATH) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def evaluate_pii(path: Path = DEFAULT_PATH) -> dict:
    """Per-entity precision, recall, F1 and support on the eval split, and on all rows.

    ``support`` is the number of gold spans; with no support an entity's recall and F1 are 0
    and only its ``predicted`` count (false positives) is informative.
    """
    rows = load_rows(path)
    eval_rows = [r for r in rows if split_of(str(r["template_id"]), EVAL_SHARE) == "eval"]
    return {
        "split": "eval",
        "eval_share": EVAL_SHARE,
        "rows": len(eval_rows),
        "templates": len({r["template_id"] for r in eval_rows}),
        "entities": _scores(_counts(eval_rows)),
        "all_rows": {"rows": len(rows), "entities": _scores(_counts(rows))},
    }


def format_table(scores: dict[str, dict[str, float | int]]) -> str:
    lines = [f"{'entity':<14} {'prec':>6} {'recall':>6} {'f1':>6} {'support':>7} {'pred':>5}"]
    for entity, s in scores.items():
        lines.append(
            f"{entity:<14} {s['precision']:>6.3f} {s['recall']:>6.3f} {s['f1']:>6.3f}"
            f" {s['support']:>7} {s['predicted']:>5}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    result = evaluate_pii(Path(argv[0]) if argv else DEFAULT_PATH)
    print(f"eval split: {result['rows']} rows from {result['templates']} templates")
    print(format_table(result["entities"]))
    print(
        f"\nall rows (includes the train templates the regexes were tuned on): "
        f"{result['all_rows']['rows']} rows"
    )
    print(format_table(result["all_rows"]["entities"]))


if __name__ == "__main__":
    main(sys.argv[1:])
