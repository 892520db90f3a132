"""Precision and recall of the regex PII detectors on the Presidio synthetic data set.

The data (``presidio_synth_dataset_v2.json`` from presidio-research, under ../shared/data/pii)
is a list of rows ``{full_text, spans: [{entity_type, start_position, end_position}],
template_id}``. Rows made from one template share their wording, so the split is by template:
``split_of(str(template_id), EVAL_SHARE)``. The detectors were tuned on the train templates
only, and the eval split was scored once tuning was done (the misses listed below were read
after that, and not fixed); the numbers to quote are the eval split's.

Matching rule: a predicted span is a true positive when it has the same entity type as a gold
span and overlaps it by at least one character; each gold span can be matched once, so a
second prediction on the same gold span is a false positive. Precision is true positives over
predictions, recall is matched gold spans over gold spans, both per entity type.

Run with ``wrp eval safety``.

What the data labels and a regex cannot reasonably catch (left as misses, not special-cased):

* Template 164, "They're not answering at 78 651 450": 8-9 digit numbers in two or three
  spaced groups with no phone word nearby. Without a label such a number is indistinguishable
  from any other count or id, and flagging every one would wreck precision on ordinary text.
* Template 13, one 12-digit "Maestro" number starting 0604: the prefix comes from Faker's
  Maestro list, but ISO/IEC 7812 gives major industry identifier 0 to ISO/TC 68 assignments,
  not to card issuers, so the card check rejects it (other numbers from the same template,
  with real prefixes, are found).
* Only 7 of the 209 templates carry IBAN_CODE, US_SSN or IP_ADDRESS labels, and all 7 hash to
  the train side at a 30% eval share: the eval split has no support for those three, and
  their all-rows figures are on rows that were visible while tuning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline.evaluation.split import split_of
from pipeline.safety.pii import PiiSpan, find_pii
from pipeline.vocabulary import KNOWN_ENTITIES

EVAL_SHARE = 0.3
# The Presidio entity types our detectors cover (SECRET has no gold labels in this set).
EVALUATED = tuple(e for e in KNOWN_ENTITIES if e != "SECRET")


def _detected(text: str) -> list[PiiSpan]:
    return find_pii(text, EVALUATED)


def counts(
    rows: Iterable[dict],
    predict: Callable[[str], list[PiiSpan]] = _detected,
    entities: tuple[str, ...] = EVALUATED,
) -> dict[str, dict[str, int]]:
    """Per entity: true positives, predictions (``predict`` of a row's text) and gold spans
    over ``rows``."""
    tally = {e: {"tp": 0, "predicted": 0, "gold": 0} for e in entities}
    for row in rows:
        predicted = predict(row["full_text"])
        for entity in entities:
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
                    tally[entity]["tp"] += 1
            tally[entity]["predicted"] += len(mine)
            tally[entity]["gold"] += len(gold)
    return tally


def scores(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, float | int | None]]:
    """Precision, recall and F1 per entity; None where undefined (nothing predicted or no
    gold spans), so that "not measurable" never reads as a score of 0."""
    out: dict[str, dict[str, float | int | None]] = {}
    for entity, c in counts.items():
        precision = c["tp"] / c["predicted"] if c["predicted"] else None
        recall = c["tp"] / c["gold"] if c["gold"] else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[entity] = {
            "precision": None if precision is None else round(precision, 4),
            "recall": None if recall is None else round(recall, 4),
            "f1": None if f1 is None else round(f1, 4),
            "support": c["gold"],
            "predicted": c["predicted"],
        }
    return out


def evaluate_pii(path: Path) -> dict:
    """Per-entity precision, recall, F1 and support on the eval split, and on all rows.

    ``support`` is the number of gold spans and ``predicted`` the number of predicted spans.
    With no support, recall and F1 are None and ``predicted`` counts false positives.
    """
    rows = json.loads(path.read_text(encoding="utf-8"))
    eval_rows = [r for r in rows if split_of(str(r["template_id"]), EVAL_SHARE) == "eval"]
    return {
        "split": "eval",
        "eval_share": EVAL_SHARE,
        "rows": len(eval_rows),
        "templates": len({r["template_id"] for r in eval_rows}),
        "entities": scores(counts(eval_rows)),
        "all_rows": {"rows": len(rows), "entities": scores(counts(rows))},
    }
