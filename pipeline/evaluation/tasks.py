"""The labelled rows of each trained head: text, target, source and split, built from shared data.

Training uses only rows whose split is ``train``; evaluation reports only ``eval`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.evaluation import augment
from pipeline.evaluation import datasets as ds
from pipeline.vocabulary import COMPLEXITY, DOMAINS, MODERATION_CATEGORIES

#: Models whose MMLU-Pro correctness defines "strong" and "weak" (the 5 best and the 10 worst
#: by overall accuracy in the shared correctness table).
STRONG_TIER = 5
WEAK_TIER = 10
#: Characters per token when turning answer lengths into token priors.
CHARS_PER_TOKEN = 4.0


@dataclass
class Task:
    name: str
    kind: str  # "softmax" | "sigmoid"
    labels: list[str]
    texts: list[str]
    targets: np.ndarray  # class index per row, or (rows, labels) 0/1/NaN
    sources: list[str]
    splits: np.ndarray  # "train" / "eval" per row
    meta: dict
    #: rows that must share a cross-validation fold (a prompt and its augmented variants);
    #: None: each text is its own group
    groups: list[str] | None = None

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def group(self, row: int) -> str:
        return self.texts[row] if self.groups is None else self.groups[row]


def _tiers(frame) -> tuple[list[str], list[str]]:
    models = [c for c in frame.columns if c.endswith("_5shots")]
    ranked = frame.loc[frame.split == "train", models].mean().sort_values()
    return list(ranked.index[-STRONG_TIER:]), list(ranked.index[:WEAK_TIER])


def complexity_labels(frame) -> tuple[np.ndarray, dict]:
    """easy: most weak models answer right; hard: most strong models answer wrong; else medium."""
    strong, weak = _tiers(frame)
    s = frame[strong].mean(axis=1).to_numpy()
    w = frame[weak].mean(axis=1).to_numpy()
    labels = np.where(s < 0.5, COMPLEXITY.index("hard"), COMPLEXITY.index("medium"))
    labels = np.where((w >= 0.5) & (s >= 0.5), COMPLEXITY.index("easy"), labels)
    return labels, {"strong_models": strong, "weak_models": weak}


def output_token_priors(root: Path, frame) -> dict[str, int]:
    """Median answer length per category on train rows, in tokens (chars / 4). Only four
    models report lengths; a 0 means unknown, not an empty answer."""
    import pandas as pd

    chars = pd.read_parquet(root / "routing/mmlu_pro/output_chars.parquet")
    merged = frame[["question_id", "category", "split"]].merge(chars, on="question_id")
    train = merged[merged.split == "train"]
    models = [c for c in chars.columns if c != "question_id"]
    priors = {}
    for category, rows in train.groupby("category"):
        lengths = rows[models].to_numpy(dtype=float)
        median = float(np.nanmedian(np.where(lengths > 0, lengths, np.nan)))
        priors[str(category)] = max(1, round(median / CHARS_PER_TOKEN))
    return priors


def _mmlu_texts(frame) -> list[str]:
    return [ds.mmlu_prompt(q, list(o)) for q, o in zip(frame.question, frame.options, strict=True)]


def domain_task(root: Path) -> Task:
    frame = ds.mmlu_pro(root)
    return Task(
        name="domain",
        kind="softmax",
        labels=list(DOMAINS),
        texts=_mmlu_texts(frame),
        targets=np.array([DOMAINS.index(c) for c in frame.category]),
        sources=["mmlu_pro"] * len(frame),
        splits=frame.split.to_numpy(),
        meta={"output_tokens_prior": output_token_priors(root, frame)},
    )


def complexity_task(root: Path) -> Task:
    frame = ds.mmlu_pro(root)
    labels, meta = complexity_labels(frame)
    strong = frame[meta["strong_models"]].mean(axis=1).to_numpy()
    weak = frame[meta["weak_models"]].mean(axis=1).to_numpy()
    return Task(
        name="complexity",
        kind="softmax",
        labels=list(COMPLEXITY),
        texts=_mmlu_texts(frame),
        targets=labels,
        sources=["mmlu_pro"] * len(frame),
        splits=frame.split.to_numpy(),
        meta={**meta, "strong_accuracy": strong.tolist(), "weak_accuracy": weak.tolist()},
    )


#: The safety head's classes; each risk class is its own detector with its own threshold.
SAFETY_LABELS = ["benign", "jailbreak", "injection", "harmful"]
HARMFUL_SOURCES = ("advbench", "harmbench", "donotanswer")
#: Benign requests wrapped in fiction framings or given junk suffixes (as negatives).
WRAPPED_BENIGN = ("arena_hard", "mt_bench", "wildguard_benign")
#: Benign documents instructions are planted in.
DOCUMENTS = ("arena_hard", "mmlu_pro", "mitre_frr", "wildguard_benign")


def safety_rows(root: Path) -> dict[str, tuple[str, list[ds.Text]]]:
    """Every source of the safety head: its class and its rows, augmented ones included."""
    attacks, benign = ds.attack_sources(root), ds.benign_sources(root)
    harmful = [r for s in HARMFUL_SOURCES for r in attacks[s]]
    gentle = [r for s in WRAPPED_BENIGN for r in benign[s]]
    documents = [r for s in DOCUMENTS for r in capped(benign[s], ds.BENIGN_TRAIN_CAP // 3)]
    systems = {p: t for t, p in ds.injection_cases(root)}
    sources: dict[str, tuple[str, list[ds.Text]]] = {
        s: (ds.ATTACK_CLASSES[s], rows) for s, rows in attacks.items()
    }
    sources |= {s: ("benign", capped(rows, ds.BENIGN_TRAIN_CAP)) for s, rows in benign.items()}
    sources["cse_system"] = (
        "benign",
        [ds.Text("cse_system", t.group, p) for p, t in systems.items()],
    )
    written = augment.written_injections()
    planted = augment.planted(attacks["cse_direct"], documents) + augment.planted(
        written, documents
    )
    for label, rows in (
        ("jailbreak", augment.wrapped(harmful, unbound=True)),
        ("benign", augment.wrapped(gentle, unbound=False)),
        ("harmful", augment.suffixed(harmful)),
        ("benign", augment.suffixed(gentle)),
        ("jailbreak", written),
        ("injection", [injected for injected, _ in planted]),
        ("benign", [clean for _, clean in planted]),
    ):
        for row in rows:
            sources.setdefault(row.source, (label, []))[1].append(row)
    return sources


def safety_task(root: Path) -> Task:
    """Jailbreaks, prompt injections and harmful requests (classes kept apart) against benign
    prompts, each by source. MMLU-Pro's train rows are capped so it does not drown the other
    benign sources."""
    labels = SAFETY_LABELS
    texts, targets, sources, splits, groups = [], [], [], [], []
    for source, (label, rows) in safety_rows(root).items():
        for row in rows:
            texts.append(row.text)
            targets.append(labels.index(label))
            sources.append(source)
            splits.append(row.split())
            # a clean excerpt's group is already its planted twin's (see augment.planted)
            excerpt = source.startswith("excerpt:")
            groups.append(row.group if excerpt else f"{ds.family(source)}:{row.group}")
    return Task(
        name="safety",
        kind="softmax",
        labels=labels,
        texts=texts,
        targets=np.array(targets),
        sources=sources,
        splits=np.array(splits),
        meta={},
        groups=groups,  # a prompt and its framed, suffixed or planted variants share a fold
    )


def capped(rows: list[ds.Text], cap: int) -> list[ds.Text]:
    """Every eval row, and at most ``cap`` train rows (a deterministic pseudo-random pick)."""
    train = sorted((r for r in rows if r.split() == "train"), key=lambda r: r.digest())
    return [r for r in rows if r.split() == "eval"] + train[:cap]


def moderation_task(root: Path) -> Task:
    """The OpenAI moderation set, plus benign prompts as all-negative rows: without them the
    head learns that any question is suspect (it flagged 7-10% of benign prompts)."""
    rows = ds.moderation(root)
    texts = [r.text for r in rows]
    targets = [
        [np.nan if r.labels[c] is None else r.labels[c] for c in MODERATION_CATEGORIES]
        for r in rows
    ]
    for source_rows in ds.benign_sources(root).values():
        kept = capped(source_rows, ds.BENIGN_TRAIN_CAP // 3)
        texts += kept
        targets += [[0.0] * len(MODERATION_CATEGORIES)] * len(kept)
    return Task(
        name="moderation",
        kind="sigmoid",
        labels=list(MODERATION_CATEGORIES),
        texts=[t.text for t in texts],
        targets=np.array(targets, dtype=np.float32),
        sources=[t.source for t in texts],
        splits=np.array([t.split() for t in texts]),
        meta={},
    )


TASKS = {
    "domain": domain_task,
    "complexity": complexity_task,
    "safety": safety_task,
    "moderation": moderation_task,
}
