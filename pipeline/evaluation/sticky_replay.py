"""``wrp eval sticky``: multi-turn sessions replayed through the real router with the default
policy, sticky sessions on against off: model switches per session, estimated cost with a
prefix cache, and the quality estimate of the models chosen.

Sessions: the demo workload's (``workloads/demo.jsonl``, 2-3 turns each), MT-Bench's 80
two-turn questions (the second turn carries the first answer of ``mt_bench_answers_martian``)
and the multi-turn red-team dialogues of Anthropic's hh-rlhf harmless test split (every human
turn a request carrying the conversation so far, assistant turns from the "chosen" side). Each
turn's signals come from the signal extractor on the cached embedding of its routing text;
safety is not replayed (every turn is allowed: a safety pin would be one more forced switch).
Learned router state starts empty, pools are healthy, one router instance with a seeded random
source serves every session in order, so both runs see the same Thompson draws.

Cost model (USD at the model cards' prices): a turn served by the model that served the
session's previous turn bills the conversation before its new message (its prefix, K tokens)
at ``cached_input_share`` of the input price (hosted providers' cached-input rate; the policy's
0.1) and the rest of the prompt at full price; a first turn or a switch bills the whole prompt
at full price (the prefix is re-prefilled). Answers are billed at the output price for their
real length where the set has one (MT-Bench, hh-rlhf), else the signals' expected length. No
parameter was tuned on these sessions (the margin is vLLM Semantic Router's 0.05), so every
session is reported.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.envelope import ChatRequest, Envelope, RequestSection, Signals
from pipeline.evaluation import datasets
from pipeline.evaluation.embedding_cache import EmbeddingCache
from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_replay import ALLOWED, ROUTER_SEED
from pipeline.evaluation.split import split_of
from pipeline.policy import Policy
from pipeline.router.route import RouterRuntime, route
from pipeline.settings import DEMO_WORKLOAD, data_dir
from pipeline.workload.extractor import SignalExtractor
from pipeline.workload.structural import MESSAGE_OVERHEAD_TOKENS, routing_text

MT_BENCH_QUESTIONS = "routing/routellm/mt_bench_question.jsonl"
MT_BENCH_ANSWERS = "routing/routellm/mt_bench_answers_martian.jsonl"
HH_RLHF = "safety/hh_rlhf/harmless_base_test.jsonl.gz"
#: Margins of the sensitivity sweep (quality points a switch must win by).
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5)
#: Share of each set's sessions reported; the rest tune the margin.
EVAL_SHARE = 0.5
#: vLLM Semantic Router's session-aware routing: -79.29% switches, -78.71% estimated cost.
REFERENCE = {"switches_pct": -79.29, "cost_pct": -78.71}


@dataclass(frozen=True)
class Turn:
    messages: list[dict]  # the conversation so far, ending with the new user message
    answer: str | None  # the answer the set records, when it has a real one


@dataclass(frozen=True)
class Session:
    id: str
    tenant: str
    turns: list[Turn]


def demo_sessions(path: Path = DEMO_WORKLOAD) -> list[Session]:
    """The demo workload's sessions, turns in conversation order (its answers are placeholders)."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("session_id"):
            grouped[row["session_id"]].append(row)
    return [
        Session(
            sid,
            rows[0].get("tenant", "default"),
            [
                Turn(r["body"]["messages"], None)
                for r in sorted(rows, key=lambda r: len(r["body"]["messages"]))
            ],
        )
        for sid, rows in sorted(grouped.items())
    ]


def mt_bench_sessions(root: Path) -> list[Session]:
    """MT-Bench questions as two-turn sessions, the first answer from the Martian router's run."""
    questions = [
        json.loads(line)
        for line in datasets.data_file(root, MT_BENCH_QUESTIONS).read_text().splitlines()
        if line.strip()
    ]
    answers = {}
    for line in datasets.data_file(root, MT_BENCH_ANSWERS).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            answers[row["question_id"]] = row["choices"][0]["turns"]
    sessions = []
    for q in questions:
        first, second = q["turns"][:2]
        reply = answers.get(q["question_id"], ["", ""])
        history = [{"role": "user", "content": first}]
        turns = [
            Turn(history, reply[0] or None),
            Turn(
                [
                    *history,
                    {"role": "assistant", "content": reply[0]},
                    {"role": "user", "content": second},
                ],
                reply[1] or None,
            ),
        ]
        sessions.append(Session(f"mt-bench-{q['question_id']}", "default", turns))
    return sessions


def dialogue(text: str) -> list[dict]:
    """hh-rlhf's ``\\n\\nHuman: ...\\n\\nAssistant: ...`` transcript as chat messages."""
    messages: list[dict] = []
    for part in text.split("\n\nHuman: ")[1:]:
        human, _, assistant = part.partition("\n\nAssistant: ")
        messages.append({"role": "user", "content": human.strip()})
        if assistant.strip():
            messages.append({"role": "assistant", "content": assistant.strip()})
    return messages


def hh_rlhf_sessions(root: Path) -> list[Session]:
    """The harmless test split's dialogues with two or more human turns."""
    sessions = []
    with gzip.open(datasets.data_file(root, HH_RLHF), "rt") as lines:
        for number, line in enumerate(lines):
            messages = dialogue(json.loads(line)["chosen"])
            users = [i for i, m in enumerate(messages) if m["role"] == "user" and m["content"]]
            if len(users) < 2:
                continue
            turns = []
            for i in users:
                following = messages[i + 1] if i + 1 < len(messages) else None
                answer = (
                    following["content"] if following and following["role"] == "assistant" else None
                )
                turns.append(Turn(messages[: i + 1], answer))
            sessions.append(Session(f"hh-rlhf-{number}", "default", turns))
    return sessions


@dataclass
class Routed:
    """One replayed turn: its signals, the model chosen, and the tokens the cost model bills."""

    signals: Signals
    model: str
    decision: str
    candidates: list[str]
    sticky: bool
    switched_from: str | None
    prompt_tokens: int
    prefix_tokens: int
    answer_tokens: int


class Replayer:
    """Signals of every turn of a set (computed once), routed under a given policy."""

    def __init__(self, policy: Policy, cache: EmbeddingCache, name: str, sessions: list[Session]):
        self.sessions = sessions
        extractor = SignalExtractor(policy, cache.encoder)
        count = cache.encoder.count_tokens
        self.requests: list[list[RequestSection]] = []
        flat: list[RequestSection] = []
        self.prefix: list[list[int]] = []
        self.answers: list[list[int | None]] = []
        for s in sessions:
            requests = [
                RequestSection(
                    request_id=f"{s.id}-{t}",
                    session_id=s.id,
                    tenant=s.tenant,
                    body=ChatRequest(messages=turn.messages),
                )
                for t, turn in enumerate(s.turns)
            ]
            self.requests.append(requests)
            flat += requests
            self.prefix.append(
                [count(turn.messages[-1]["content"]) + MESSAGE_OVERHEAD_TOKENS for turn in s.turns]
            )
            self.answers.append([count(t.answer) if t.answer else None for t in s.turns])
        texts = [routing_text(r.body) for r in flat]
        vectors = cache.embed(texts, name)
        progress(f"signals of {len(flat)} {name} turns")
        signals = iter(extractor.from_embeddings(flat, texts, vectors))
        self.signals = [[next(signals) for _ in requests] for requests in self.requests]

    def run(self, policy: Policy) -> list[list[Routed]]:
        """Every session's turns routed in order by one router instance."""
        runtime = RouterRuntime(rng=np.random.default_rng(ROUTER_SEED))
        out = []
        for requests, signals, last, answers in zip(
            self.requests, self.signals, self.prefix, self.answers, strict=True
        ):
            routed = []
            for request, sig, new_tokens, answer in zip(
                requests, signals, last, answers, strict=True
            ):
                decision = route(
                    Envelope(request=request, signals=sig, safety=ALLOWED), policy, runtime
                )
                routed.append(
                    Routed(
                        sig,
                        decision.model,
                        decision.decision,
                        decision.candidates,
                        decision.sticky,
                        decision.switched_from,
                        sig.prompt_tokens,
                        max(sig.prompt_tokens - new_tokens, 0),
                        answer if answer is not None else sig.expected_output_tokens,
                    )
                )
            out.append(routed)
        return out


def with_sticky(policy: Policy, enabled: bool, margin: float | None = None) -> Policy:
    """``policy`` with sticky sessions on or off everywhere (decision overrides too), and
    optionally another margin."""
    data = policy.model_dump(by_alias=True)
    changes = {"enabled": enabled} if margin is None else {"enabled": enabled, "margin": margin}
    data["router"]["sticky"].update(changes)
    for spec in [*data["router"]["decisions"], data["router"]["default"]]:
        if spec.get("sticky"):
            spec["sticky"].update(changes)
    return Policy.model_validate(data)


def measure(policy: Policy, sessions: list[list[Routed]]) -> dict:
    """Switches, cost under the prefix-cache model, re-prefilled tokens and quality estimate."""
    share = policy.router.sticky.cached_input_share
    switches = switched_sessions = held = outside = decision_changes = followups = 0
    cost = uncached = reprefill = quality = 0.0
    turns = 0
    for routed in sessions:
        any_switch = False
        for t, r in enumerate(routed):
            card = policy.model(r.model)
            price = card.price
            full = price.cost(r.prompt_tokens, r.answer_tokens)
            uncached += full
            quality += card.prior_quality(r.signals.domain)
            turns += 1
            if t and routed[t - 1].model == r.model:
                cost += full - r.prefix_tokens * price.input_per_mtok * (1 - share) / 1e6
            else:
                cost += full
            if t:
                followups += 1
                decision_changes += routed[t - 1].decision != r.decision
                if routed[t - 1].model != r.model:
                    switches += 1
                    any_switch = True
                    reprefill += r.prefix_tokens
                    outside += routed[t - 1].model not in r.candidates
            held += r.sticky
        switched_sessions += any_switch
    n = len(sessions)
    return {
        "sessions": n,
        "turns": turns,
        "switches": switches,
        "switches_per_session": round(switches / n, 4),
        "sessions_switched_share": round(switched_sessions / n, 4),
        "switches_model_not_a_candidate": outside,
        "followup_turns": followups,
        "followups_changing_decision": decision_changes,
        "held_turns": held,
        "cost_usd": round(cost, 6),
        "cost_usd_without_cache": round(uncached, 6),
        "cache_saved_share": round(1 - cost / uncached, 4) if uncached else 0.0,
        "reprefill_tokens": int(reprefill),
        "mean_quality_estimate": round(quality / turns, 4),
    }


def change(off: float, on: float) -> float | None:
    return round(100 * (on - off) / off, 1) if off else None


def compare(policy: Policy, replayer: Replayer) -> dict:
    """Sticky off against the policy's sticky settings, and on at every margin of the sweep."""
    off = measure(policy, replayer.run(with_sticky(policy, False)))
    on = measure(policy, replayer.run(with_sticky(policy, True)))
    margins = {
        f"{margin:g}": measure(policy, replayer.run(with_sticky(policy, True, margin)))
        for margin in MARGINS
    }
    return {
        "off": off,
        "on": on,
        "switches_change_pct": change(off["switches"], on["switches"]),
        "cost_change_pct": change(off["cost_usd"], on["cost_usd"]),
        "reprefill_change_pct": change(off["reprefill_tokens"], on["reprefill_tokens"]),
        "margins": {
            margin: {
                "switches_per_session": m["switches_per_session"],
                "switches_change_pct": change(off["switches"], m["switches"]),
                "cost_usd": m["cost_usd"],
                "cost_change_pct": change(off["cost_usd"], m["cost_usd"]),
                "mean_quality_estimate": m["mean_quality_estimate"],
                "turns": m["turns"],
            }
            for margin, m in margins.items()
        },
    }


def pooled(sections: list[dict], margin: str | None) -> tuple[float, float]:
    """Total cost and turn-weighted mean quality estimate over sets, sticky off (None) or on
    at ``margin``."""
    rows = [s["off"] if margin is None else s["margins"][margin] for s in sections]
    turns = sum(r["turns"] for r in rows)
    quality = sum(r["mean_quality_estimate"] * r["turns"] for r in rows) / turns
    return sum(r["cost_usd"] for r in rows), quality


def tuned_margin(sections: list[dict]) -> str:
    """The cheapest margin whose mean quality estimate is not below sticky off's."""
    _, floor = pooled(sections, None)
    fits = [m for m in sections[0]["margins"] if pooled(sections, m)[1] >= floor - 1e-9]
    return min(fits, key=lambda m: (pooled(sections, m)[0], float(m)))


def eval_sticky(policy: Policy, cache: EmbeddingCache, out: Path) -> dict:
    """Tune the margin on half the sessions of every set (a hash of the first turn's text),
    report the default policy on the other half."""
    root = data_dir()
    sets = {
        "demo": demo_sessions(),
        "mt_bench": mt_bench_sessions(root),
        "hh_rlhf": hh_rlhf_sessions(root),
    }
    tune: dict[str, dict] = {}
    held_out: dict[str, dict] = {}
    for name, sessions in sets.items():
        parts: dict[str, list[Session]] = {"train": [], "eval": []}
        for session in sessions:
            first = session.turns[0].messages[-1]["content"]
            parts[split_of(f"sticky:{first}", EVAL_SHARE)].append(session)
        for part, into in (("train", tune), ("eval", held_out)):
            chosen = parts[part]
            turns = sum(len(s.turns) for s in chosen)
            progress(f"{name} {part}: {len(chosen)} sessions, {turns} turns")
            into[name] = compare(policy, Replayer(policy, cache, f"{name}-{part}", chosen))
    chosen = tuned_margin(list(tune.values()))
    report: dict = {
        "setup": {
            "policy_sticky": policy.router.sticky.model_dump(),
            "cost_model": (
                "USD at the cards' prices; a turn on the previous turn's model bills its prefix "
                f"at {policy.router.sticky.cached_input_share:g} x the input price, a switch or "
                "first turn re-bills it at full price; answers at their recorded length (else "
                "the expected length)"
            ),
            "quality": "mean of the chosen model card's prior for the turn's domain",
            "split": f"sessions by a hash of the first turn's text: {EVAL_SHARE:.0%} reported, "
            "the rest to tune the margin on",
            "tuning": "the cheapest margin whose mean quality estimate is not below sticky off's",
            "tuned_margin": float(chosen),
            "reference": REFERENCE,
        },
        "tune": {name: {"off": s["off"], "margins": s["margins"]} for name, s in tune.items()},
        "sets": held_out,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sticky.json"
    path.write_text(json.dumps(report, indent=2))
    report["written"] = str(path)
    return report


def render(report: dict) -> str:
    setup = report["setup"]
    lines = [
        f"sticky sessions with the default policy: {setup['policy_sticky']}",
        f"cost model: {setup['cost_model']}",
        f"quality: {setup['quality']}",
        f"split: {setup['split']}",
        f"margin tuned on the other sessions ({setup['tuning']}): {setup['tuned_margin']:g}",
        "",
        f"{'set':<9} {'mode':<4} {'sessions':>8} {'turns':>6} {'switches':>8} {'sw/sess':>7} "
        f"{'>=1 sw':>6} {'held':>5} {'USD':>9} {'cache saved':>11} {'re-prefill tok':>14} "
        f"{'quality':>7}",
    ]
    for name, section in report["sets"].items():
        for mode in ("off", "on"):
            m = section[mode]
            lines.append(
                f"{name:<9} {mode:<4} {m['sessions']:>8} {m['turns']:>6} {m['switches']:>8} "
                f"{m['switches_per_session']:>7.3f} {m['sessions_switched_share']:>6.1%} "
                f"{m['held_turns']:>5} {m['cost_usd']:>9.4f} {m['cache_saved_share']:>11.1%} "
                f"{m['reprefill_tokens']:>14} {m['mean_quality_estimate']:>7.3f}"
            )
        lines.append(
            f"{'':<9} sticky vs not: switches {section['switches_change_pct']}%, cost "
            f"{section['cost_change_pct']}%, re-prefilled tokens {section['reprefill_change_pct']}%"
            f" (vLLM-SR: {REFERENCE['switches_pct']}% switches, {REFERENCE['cost_pct']}% cost)"
        )
    lines += ["", "margin sweep on the reported sessions (sticky on; change against off):"]
    for name, section in report["sets"].items():
        cells = [
            f"{margin}: {m['switches_change_pct']}% sw, {m['cost_change_pct']}% USD, "
            f"q {m['mean_quality_estimate']:.3f}"
            for margin, m in section["margins"].items()
        ]
        lines.append(f"  {name:<9} " + " | ".join(cells))
    lines.append(f"wrote {report.get('written', '')}")
    return "\n".join(lines)
