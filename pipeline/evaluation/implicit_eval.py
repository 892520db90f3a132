"""``wrp eval implicit``: the next-turn detector (:mod:`pipeline.learn.implicit`) on hand labels.

The labelled sample is the project's own: next user turns drawn with a fixed seed from the
shared data's multi-turn material (Anthropic HH-RLHF red-team dialogues, MT-Bench's second
turns) and labelled by reading them. ``implicit_labels.csv`` beside this file holds only the
labels and where each turn is (source file, row, turn index); the text is read from
``../shared/data`` at run time, never copied. Rows split by a hash of their identifier into
``tune`` (where the re-ask threshold is chosen) and ``test`` (reported).
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.evaluation.datasets import data_dir, data_file
from pipeline.evaluation.split import split_of

LABELS_PATH = Path(__file__).with_name("implicit_labels.csv")
HH_RLHF = "safety/hh_rlhf/harmless_base_test.jsonl.gz"
MT_BENCH_QUESTIONS = "routing/routellm/mt_bench_question.jsonl"
MT_BENCH_ANSWERS = "routing/routellm/mt_bench_answers_martian.jsonl"
#: next turns drawn from HH-RLHF (every MT-Bench second turn is labelled too)
HH_SAMPLE = 260
SEED = 18
#: share of labelled rows held out for the test split
TEST_SHARE = 0.5
_TURN = re.compile(r"\n\nHuman: |\n\nAssistant: ")


@dataclass(frozen=True)
class Exchange:
    """A user turn, the answer it got, and the user's next turn."""

    source: str
    row: int
    turn: int  # index of the next user turn among the dialogue's user turns
    previous: str
    answer: str
    next: str

    @property
    def key(self) -> str:
        return f"{self.source}:{self.row}:{self.turn}"


def _hh_dialogue(transcript: str) -> list[tuple[str, str]]:
    """(user, assistant) turns of an HH-RLHF transcript; the last answer may be empty."""
    parts = _TURN.split(transcript)[1:]
    return [(parts[i], parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]


def hh_exchanges(root: Path) -> list[Exchange]:
    """Every (user turn, answer, next user turn) of the HH-RLHF test dialogues (``chosen``)."""
    out = []
    with gzip.open(data_file(root, HH_RLHF), "rt") as lines:
        for row, line in enumerate(lines):
            turns = _hh_dialogue(json.loads(line)["chosen"])
            for i in range(1, len(turns)):
                previous, answer = turns[i - 1]
                out.append(Exchange(HH_RLHF, row, i, previous, answer, turns[i][0]))
    return out


def mt_bench_exchanges(root: Path) -> list[Exchange]:
    """MT-Bench's first turn, an answer to it (Martian's router), and the second turn."""
    answers = {}
    for line in data_file(root, MT_BENCH_ANSWERS).read_text().splitlines():
        item = json.loads(line)
        answers[item["question_id"]] = item["choices"][0]["turns"][0]
    out = []
    for row, line in enumerate(data_file(root, MT_BENCH_QUESTIONS).read_text().splitlines()):
        item = json.loads(line)
        first, second = item["turns"][:2]
        out.append(
            Exchange(MT_BENCH_QUESTIONS, row, 1, first, answers[item["question_id"]], second)
        )
    return out


def sample(root: Path) -> list[Exchange]:
    """The rows to label: :data:`HH_SAMPLE` HH-RLHF next turns drawn with :data:`SEED`, then
    every MT-Bench second turn."""
    hh = hh_exchanges(root)
    return [*random.Random(SEED).sample(hh, HH_SAMPLE), *mt_bench_exchanges(root)]
