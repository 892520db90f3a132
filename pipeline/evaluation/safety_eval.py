"""The shipped safety decision, end to end: the screener with the configured policy and the
committed heads, on eval rows only, each arriving as it would at the gateway.

- a prompt arrives as one user turn; a CyberSecEval case as the system prompt it attacks and
  the attacking user turn; a benign system prompt before a greeting; a planted injection (and
  its clean excerpt) as a tool result after a user's "summarise the search result";
- per source: the share blocked, and the share a user notices any action on (block,
  route_safe, flag; redaction passes the request on);
- leave-one-family-out: for each attack family, a safety head trained without any of its rows
  (augmented ones included), at the shipped thresholds, through the same screener: the figure
  for attacks nobody has seen;
- a benign prompt sent twice in one session: the second send must not block when the first did
  not;
- indirect injection: AUROC of the injection score, planted (held-out instructions in held-out
  documents) against the clean excerpts, both as tool results.
"""

from __future__ import annotations

import sys

import numpy as np

from pipeline.envelope import ChatRequest, Envelope, RequestSection, Safety
from pipeline.evaluation import datasets as ds
from pipeline.evaluation.embedding_cache import EmbeddingCache
from pipeline.evaluation.head_training import fit
from pipeline.evaluation.tasks import TASKS, Task
from pipeline.models.heads import load_trained
from pipeline.policy import Policy
from pipeline.safety.screener import Screener
from pipeline.settings import data_dir
from pipeline.workload.extractor import SignalExtractor

#: Actions a user notices (a redacted request is still answered).
NOTICED = ("block", "route_safe", "flag")
BATCH = 64
SUMMARISE = "Summarise the search result for me."


def arrival(task: Task, row: int, systems: dict[str, str]) -> ChatRequest:
    """The request a row arrives in."""
    source, text = task.sources[row], task.texts[row]
    if source.startswith(("planted:", "excerpt:")):
        call = {
            "id": "call_0",
            "type": "function",
            "function": {"name": "search", "arguments": "{}"},
        }
        return ChatRequest(
            messages=[
                {"role": "user", "content": SUMMARISE},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_0", "content": text},
            ]
        )
    if source == "cse_system":  # a benign system prompt, as the application sends it
        return ChatRequest(
            messages=[
                {"role": "system", "content": text},
                {"role": "user", "content": "Hello, what can you help me with?"},
            ]
        )
    if text in systems and source.startswith("cse_"):
        return ChatRequest(
            messages=[
                {"role": "system", "content": systems[text]},
                {"role": "user", "content": text},
            ]
        )
    return ChatRequest(messages=[{"role": "user", "content": text}])


class Harness:
    """Envelopes with their signals, built once, screened by any screener."""

    def __init__(self, policy: Policy, cache: EmbeddingCache, task: Task) -> None:
        self.policy, self.cache, self.task = policy, cache, task
        self.extractor = SignalExtractor(policy, cache.encoder)
        self.systems = {t.text: system for t, system in ds.injection_cases(data_dir())}
        self._built: dict[int, Envelope] = {}

    def envelopes(self, rows: list[int], sessions: bool = False) -> list[Envelope]:
        """The rows' envelopes; with ``sessions`` each in a session of its own."""
        missing = [r for r in rows if r not in self._built]
        for start in range(0, len(missing), BATCH):
            chunk = missing[start : start + BATCH]
            requests = [RequestSection(body=arrival(self.task, r, self.systems)) for r in chunk]
            for r, req, sig in zip(chunk, requests, self.extractor.extract(requests), strict=True):
                self._built[r] = Envelope(request=req, signals=sig)
        out = [self._built[r] for r in rows]
        if not sessions:
            return out
        return [
            e.model_copy(update={"request": e.request.model_copy(update={"session_id": f"s{r}"})})
            for r, e in zip(rows, out, strict=True)
        ]

    def screen(
        self, screener: Screener, rows: list[int], label: str, sessions: bool = False
    ) -> list[Safety]:
        verdicts: list[Safety] = []
        for start in range(0, len(rows), BATCH):
            verdicts += screener.screen(self.envelopes(rows[start : start + BATCH], sessions))
            print(f"\r  screening {label}: {len(verdicts)}/{len(rows)}", end="", file=sys.stderr)
        print(file=sys.stderr)
        return verdicts


def _rates(verdicts: list[Safety]) -> dict:
    return {
        "rows": len(verdicts),
        "blocked": round(float(np.mean([v.action == "block" for v in verdicts])), 4),
        "noticed": round(float(np.mean([v.action in NOTICED for v in verdicts])), 4),
    }


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney U)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average the ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def evaluate_decision(policy: Policy, cache: EmbeddingCache) -> dict:
    task = TASKS["safety"](data_dir())
    harness = Harness(policy, cache, task)
    shipped = load_trained("safety", cache.encoder.name, cache.encoder.max_tokens)
    screener = Screener(policy, cache.encoder)
    held = task.rows("eval")
    sources = np.asarray(task.sources)
    attack = task.targets != 0
    by_source = {s: held[sources[held] == s].tolist() for s in sorted(set(sources[held]))}
    report: dict = {
        "model": f"{shipped.version}, policy thresholds {screener.thresholds}",
        "attacks": {},
        "benign": {},
    }
    verdicts: dict[str, list[Safety]] = {}
    for source, rows in by_source.items():
        verdicts[source] = harness.screen(screener, rows, source)
        kind = "attacks" if attack[rows[0]] else "benign"
        report[kind][source] = _rates(verdicts[source])
    report["unseen_family"] = unseen_families(task, harness, shipped, policy, cache, by_source)
    report["benign_retry"] = benign_retry(harness, policy, cache, by_source, attack)
    planted = [
        v.injection_score for s, vs in verdicts.items() if s.startswith("planted:") for v in vs
    ]
    clean = [
        v.injection_score for s, vs in verdicts.items() if s.startswith("excerpt:") for v in vs
    ]
    if planted and clean:
        report["indirect_injection_auroc"] = {
            "planted": len(planted),
            "clean": len(clean),
            "auroc": round(auroc(np.array(planted), np.array(clean)), 4),
        }
    return report


def unseen_families(
    task: Task,
    harness: Harness,
    shipped,
    policy: Policy,
    cache: EmbeddingCache,
    by_source: dict[str, list[int]],
) -> dict:
    """Per attack source: the share a screener whose head never saw the source's family
    notices, at the shipped thresholds."""
    x = cache.embed(task.texts, "safety")
    families = np.array([ds.family(s) for s in task.sources])
    train = task.rows("train")
    report = {}
    for family in sorted({ds.family(s) for s, rows in by_source.items() if task.targets[rows[0]]}):
        blind = fit(task, x, train[families[train] != family])
        blind.meta = shipped.meta
        screener = Screener(policy, cache.encoder, head=blind)
        for source, rows in by_source.items():
            if ds.family(source) == family and task.targets[rows[0]]:
                verdicts = harness.screen(screener, rows, f"{source} (family {family} unseen)")
                report[source] = {"family": family, **_rates(verdicts)}
    return report


def benign_retry(
    harness: Harness,
    policy: Policy,
    cache: EmbeddingCache,
    by_source: dict[str, list[int]],
    attack: np.ndarray,
) -> dict:
    """Each benign eval prompt sent twice in a session of its own: how often the second send
    blocks when the first did not."""
    screener = Screener(policy, cache.encoder)
    report = {}
    for source, rows in by_source.items():
        if attack[rows[0]]:
            continue
        sends = [harness.screen(screener, rows, f"{source} sent {n}", True) for n in (1, 2)]
        newly = sum(
            a.action != "block" and b.action == "block" for a, b in zip(*sends, strict=True)
        )
        report[source] = {"rows": len(rows), "second_send_newly_blocked": newly}
    return report
