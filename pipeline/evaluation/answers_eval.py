"""`wrp eval answers`: screening the answer, measured on data nobody tuned it on.

**PII in answers.** The Presidio synthetic rows (``pii/presidio_synth_dataset_v2.json``), eval split
by template as in :mod:`pipeline.evaluation.pii_eval`, are read as answers: eight consecutive rows
joined by a blank line make one answer (~700 characters, several windows), screened by the
default policy's ``safety.answers`` as a whole answer and as a stream of 4-character chunks (a
token's worth) in windows of ``window_chars``. What the client would get is aligned back to the
answer to find what was replaced; precision and recall per entity the policy redacts, matched as
in ``pii_eval`` (same type, overlapping). ``leaked`` counts gold values of those entities that
reach the client verbatim. The detectors were tuned on the train templates only (``pii_eval``);
the window size was set from the longest values the detectors find, not on this data.

**Refusal and compliance.** PyRIT's human-scored scorer evaluations
(``safety/pyrit_data/scorer_evals``): ``refusal_scorer/*.csv`` (answers labelled refusal or not)
score the answer screen's refusal check (what ``attack_complied`` reads); ``objective/*.csv``
(answers to harmful objectives labelled achieved or not) score ``attack_complied``'s answer side:
an answer that is not a refusal counts as complied. Phrasings were added to the check from the
train half (``split_of(answer, 0.5)``); the figures are of the eval half. A refusal label is
relative to the objective (an off-topic answer counts as a refusal), which a check of the
answer's text alone cannot see.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from pipeline.evaluation.pii_eval import EVAL_SHARE, counts, scores
from pipeline.evaluation.split import split_of
from pipeline.policy import AnswerScreening, load_policy
from pipeline.safety.answers import StreamScreen, is_refusal, screen_response
from pipeline.safety.pii import PiiSpan
from pipeline.vocabulary import KNOWN_ENTITIES

ROWS_PER_ANSWER = 8
CHUNK_CHARS = 4
#: Smaller windows than the default, to show what a window shorter than a value costs.
SMALL_WINDOWS = (16, 32)
_PLACEHOLDER = re.compile("<(" + "|".join(KNOWN_ENTITIES) + ")>")


def replaced_spans(original: str, screened: str) -> list[PiiSpan]:
    """The spans of ``original`` that ``screened`` replaced by ``<ENTITY>`` placeholders: the
    text between placeholders is kept verbatim, so it is matched in order and the gaps between
    are the replaced values."""
    pieces = _PLACEHOLDER.split(screened)  # text, entity, text, entity, ..., text
    pattern = "(.+?)".join(re.escape(text) for text in pieces[::2])
    match = re.fullmatch(pattern, original, re.DOTALL)
    if match is None:
        raise ValueError("the screened text is not the original with values replaced")
    return [
        PiiSpan(entity, match.start(i), match.end(i))
        for i, entity in enumerate(pieces[1::2], start=1)
    ]


def _answers(rows: list[dict]) -> list[dict]:
    """Rows joined ``ROWS_PER_ANSWER`` at a time, their gold spans moved along."""
    answers = []
    for i in range(0, len(rows), ROWS_PER_ANSWER):
        text, spans = "", []
        for row in rows[i : i + ROWS_PER_ANSWER]:
            if text:
                text += "\n\n"
            spans += [
                {
                    **s,
                    "start_position": s["start_position"] + len(text),
                    "end_position": s["end_position"] + len(text),
                }
                for s in row["spans"]
            ]
            text += row["full_text"]
        answers.append({"full_text": text, "spans": spans})
    return answers


def _completion(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def screened_whole(text: str, config: AnswerScreening) -> str:
    response, _ = screen_response(_completion(text), None, config)
    return response["choices"][0]["message"]["content"]


def screened_stream(text: str, config: AnswerScreening) -> str:
    screen = StreamScreen(config, None)
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text[i : i + CHUNK_CHARS]}}]}
        for i in range(0, len(text), CHUNK_CHARS)
    ]
    out = [*screen.feed(chunks), *screen.finish()]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in out)


def _path_scores(answers: list[dict], config: AnswerScreening, streamed: bool) -> dict:
    """Per entity precision and recall of what was replaced, and the gold values of redacted
    entities that reached the client whole (``leaked``) or in part (``partly_leaked``: a letter
    or digit of the value was not replaced)."""
    redacted = tuple(e for e, a in config.pii.items() if a == "redact")
    screen = screened_stream if streamed else screened_whole
    replaced = {}
    for answer in answers:
        text = answer["full_text"]
        replaced[text] = replaced_spans(text, screen(text, config))
    leaked = partly = 0
    for answer in answers:
        text, spans = answer["full_text"], replaced[answer["full_text"]]
        for gold in answer["spans"]:
            if gold["entity_type"] not in redacted:
                continue
            start, end = gold["start_position"], gold["end_position"]
            shown = [
                i
                for i in range(start, end)
                if text[i].isalnum() and not any(s.start <= i < s.end for s in spans)
            ]
            leaked += len(shown) == sum(c.isalnum() for c in text[start:end])
            partly += bool(shown)
    predicted = counts(answers, replaced.__getitem__, redacted)
    return {"entities": scores(predicted), "leaked": leaked, "partly_leaked": partly}


def evaluate_answer_pii(path: Path, config: AnswerScreening) -> dict:
    rows = json.loads(path.read_text(encoding="utf-8"))
    eval_rows = [r for r in rows if split_of(str(r["template_id"]), EVAL_SHARE) == "eval"]
    answers = _answers(eval_rows)
    return {
        "split": "eval",
        "rows": len(eval_rows),
        "answers": len(answers),
        "mean_answer_chars": round(sum(len(a["full_text"]) for a in answers) / len(answers)),
        "window_chars": config.window_chars,
        "chunk_chars": CHUNK_CHARS,
        "whole": _path_scores(answers, config, streamed=False),
        "streamed": _path_scores(answers, config, streamed=True),
        "streamed_small_windows": {
            w: _path_scores(answers, config.model_copy(update={"window_chars": w}), True)
            for w in SMALL_WINDOWS
        },
    }


def _scored(path: Path) -> list[dict[str, str]]:
    """A PyRIT scorer-evaluation CSV (comment lines start with #)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def _binary(pairs: list[tuple[bool, bool]]) -> dict[str, float | int | None]:
    """Accuracy, precision and recall of (predicted, actual) pairs."""
    tp = sum(p and a for p, a in pairs)
    predicted, actual = sum(p for p, _ in pairs), sum(a for _, a in pairs)
    return {
        "rows": len(pairs),
        "positives": actual,
        "accuracy": round(sum(p == a for p, a in pairs) / len(pairs), 4) if pairs else None,
        "precision": round(tp / predicted, 4) if predicted else None,
        "recall": round(tp / actual, 4) if actual else None,
    }


REFUSAL_EVAL_SHARE = 0.5


def evaluate_refusals(root: Path) -> dict:
    def held_out(folder: str) -> list[dict[str, str]]:
        return [
            r
            for f in sorted((root / folder).glob("*.csv"))
            for r in _scored(f)
            if r.get("human_score") in ("0", "1")
            and split_of(r["assistant_response"], REFUSAL_EVAL_SHARE) == "eval"
        ]

    refusals = [
        (is_refusal(r["assistant_response"]), r["human_score"] == "1")
        for r in held_out("refusal_scorer")
    ]
    complied = [
        (not is_refusal(r["assistant_response"]), r["human_score"] == "1")
        for r in held_out("objective")
    ]
    return {"refusal": _binary(refusals), "complied": _binary(complied)}


def eval_answers(policy_path: Path, data: Path) -> dict:
    config = load_policy(policy_path).safety.answers
    return {
        "pii": evaluate_answer_pii(data / "pii" / "presidio_synth_dataset_v2.json", config),
        "attack_complied": evaluate_refusals(data / "safety" / "pyrit_data" / "scorer_evals"),
    }


def render(report: dict) -> str:
    pii = report["pii"]
    lines = [
        f"PII in answers: {pii['answers']} answers of {ROWS_PER_ANSWER} Presidio eval rows "
        f"({pii['rows']} rows, ~{pii['mean_answer_chars']} characters each), default policy; "
        f"streamed in {pii['chunk_chars']}-character chunks, windows of {pii['window_chars']}",
    ]
    for path in ("whole", "streamed"):
        lines.append(
            f"  {path}: of the gold values of redacted entities, {pii[path]['leaked']} reached "
            f"the client whole, {pii[path]['partly_leaked']} in part"
        )
        for entity, m in pii[path]["entities"].items():
            lines.append(
                f"    {entity:<14} precision {m['precision']}  recall {m['recall']}  "
                f"support {m['support']}"
            )
    for window, small in pii["streamed_small_windows"].items():
        recall = {e: m["recall"] for e, m in small["entities"].items() if m["recall"] is not None}
        lines.append(
            f"  streamed, windows of {window}: {small['leaked']} whole, "
            f"{small['partly_leaked']} in part; recall {recall}"
        )
    for name, m in report["attack_complied"].items():
        lines.append(
            f"{name}: {m['rows']} human-scored answers ({m['positives']} positive): accuracy "
            f"{m['accuracy']}  precision {m['precision']}  recall {m['recall']}"
        )
    return "\n".join(lines)
