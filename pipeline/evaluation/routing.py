"""`wrp eval routing`: routing quality by offline replay through the real router.

Every evaluated request is an :class:`Envelope` whose signals the signal extractor builds from
the cached embedding of the text a user would send; :func:`pipeline.router.route.route` decides,
and online learning folds the recorded correctness of the chosen model as feedback with the
learner's own rules (``credit_feedback``, ``fold``). kNN indexes, quality priors and the success
predictor come from train rows (:func:`split_of`); every reported number is on eval rows (or,
where cross-fitted, on rows the fold's router never saw). Benchmark prompts skip the safety
stage (verdict ``allow``).

1. RouteLLM strong/weak (GPT-4-1106 vs Mixtral-8x7B) on MMLU and GSM8K: accuracy against the
   share of strong calls for knn and predicted while sweeping the cost weight lambda, and the
   share needed for 95% of the strong model's accuracy; on GSM8K also the cascade (weak first,
   escalate when its recorded answer fails a check). MT-Bench's graded turns, cross-fitted as
   ``--data`` does (:mod:`pipeline.evaluation.routing_crossfit`).
2. MMLU-Pro, 29 models at the prices of ``routing_prices.yaml``: accuracy against USD per 1,000
   queries for cost_quality, knn and predicted over the cost weight, the model best on train
   rows, every single model, random routing and the oracle; and leave-one-source-out.
3. Online learning on the MMLU-Pro eval rows as a stream: cumulative regret of thompson,
   contextual, knn and predicted against the best fixed model and the oracle.
"""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.envelope import (
    Feedback,
    RouterState,
    router_state_key,
)
from pipeline.evaluation import datasets
from pipeline.evaluation.datasets import data_file
from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_crossfit import cross_fit, labelled_bench, prompt_folds
from pipeline.evaluation.routing_replay import (
    CASCADE_CHECKS,
    HALF_LIFE_S,
    MIN_DOMAIN_ROWS,
    ROUTER_SEED,
    TARGET,
    Bench,
    Signaller,
    build_policy,
    card,
    cost_weights,
    first_crossing,
    oracle,
    random_share,
    replay,
    sweep,
    usd_per_1k,
    value_at,
)
from pipeline.evaluation.run import _cache
from pipeline.evaluation.split import split_of
from pipeline.evaluation.tasks import CHARS_PER_TOKEN
from pipeline.learn.evidence import Served, credit_feedback, fold
from pipeline.policy import KnnConfig, Policy, SignalsConfig, load_policy
from pipeline.pool.ladder import Ladder
from pipeline.router.labelled import Labelled
from pipeline.router.route import RouterRuntime, route
from pipeline.settings import DataMissing, Settings, data_dir

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
#: USD per 1M input/output tokens: OpenAI's list price of gpt-4-1106-preview (2023-2024) and
#: the serverless list price of Mixtral-8x7B-Instruct (Together, 2024).
ROUTELLM_PRICES = {WEAK: (0.6, 0.6), STRONG: (10.0, 30.0)}
PRICES_FILE = Path(__file__).with_name("routing_prices.yaml")
#: MMLU-Pro's 5-shot chain-of-thought prompt: five worked examples (question, ten options,
#: reasoning) before the question; estimated at this many tokens.
FEW_SHOT_TOKENS = 1500
#: Part 2 reference: the cheapest single model within this of the best single model's accuracy.
WITHIN = 0.05
STREAM_SEED = 7
#: Trailing window of the running accuracy in part 3 (requests).
WINDOW = 500
ONLINE = ("thompson", "contextual", "knn", "predicted")


# --- part 1: RouteLLM strong/weak ------------------------------------------------------------


def routellm(root: Path, name: str) -> pd.DataFrame:
    """RouteLLM's recorded answers on ``name`` (mmlu or gsm8k) without the contaminated prompts:
    both models' correctness as 1/0, and the ``split``."""
    base = "routing/routellm"
    if name == "mmlu":
        frame = pd.read_parquet(data_file(root, f"{base}/mmlu_responses.parquet"))
    else:
        frame = pd.read_csv(data_file(root, f"{base}/gsm8k_responses.csv"))
    lines = data_file(root, f"{base}/{name}_contaminated_prompts.jsonl").read_text().splitlines()
    contaminated = {json.loads(line)["eval_prompt"] for line in lines if line.strip()}
    frame = frame[~frame.prompt.isin(contaminated)].reset_index(drop=True)
    for model in (WEAK, STRONG):
        frame[model] = frame[model].astype(str).eq("True").astype(float)
    frame["split"] = [split_of(f"routellm-{name}:" + " ".join(p.split())) for p in frame.prompt]
    return frame


def mt_bench(root: Path) -> Labelled:
    """MT-Bench turns (the first and the follow-up question), each labelled with the GPT-4
    judge's 1-10 score / 10 for GPT-4 and Mixtral; contaminated prompts left out."""
    base = "routing/routellm"
    lines = data_file(root, f"{base}/mt_bench_question.jsonl").read_text().splitlines()
    questions = {q["question_id"]: q for q in map(json.loads, filter(str.strip, lines))}
    lines = data_file(root, f"{base}/mt_bench_contaminated_prompts.jsonl").read_text().splitlines()
    contaminated = {json.loads(line)["eval_prompt"].strip() for line in lines if line.strip()}
    scores: dict[tuple[int, int], dict[str, float]] = {}
    path = data_file(root, f"{base}/mt_bench_judgements_gpt4turbo_mixtral.jsonl")
    for line in filter(str.strip, path.read_text().splitlines()):
        judged = json.loads(line)
        if judged["model"] in ROUTELLM_PRICES and judged["score"] >= 0:
            key = (judged["question_id"], judged["turn"])
            scores.setdefault(key, {})[judged["model"]] = min(judged["score"], 10) / 10
    data = Labelled([], [], [], [])
    for (question, turn), labels in sorted(scores.items()):
        text = questions[question]["turns"][turn - 1]
        if text.strip() in contaminated:
            continue
        data.texts.append(text)
        data.labels.append(labels)
        data.costs.append({})
        data.tokens.append({})
    return data


def strong_weak_bench(root: Path, name: str, signaller: Signaller) -> tuple[Bench, pd.DataFrame]:
    """Prompt tokens as the signals count them; answers: MMLU's are one letter (its prompts end
    in "Answer:"), GSM8K's are the recorded responses at chars / 4."""
    frame = routellm(root, name)
    requests, signals, vectors = signaller.requests(f"routellm-{name}", list(frame.prompt))
    models = [WEAK, STRONG]
    prices = [ROUTELLM_PRICES[m] for m in models]
    prompt = np.array([s.prompt_tokens for s in signals], dtype=float)
    if name == "mmlu":
        output = np.ones((len(frame), len(models)))
    else:
        lengths = [frame[f"{m}_response"].fillna("").str.len() for m in models]
        output = np.stack(lengths, axis=1) / CHARS_PER_TOKEN
    bench = Bench(
        name,
        models,
        prices,
        requests,
        signals,
        vectors,
        frame[models].to_numpy(dtype=float),
        usd_per_1k(prompt, output, prices),
        (frame.split == "train").to_numpy(),
    )
    return bench, frame


def strong_weak(bench: Bench, signals: SignalsConfig, workdir: Path) -> dict:
    """Curves of knn (flat and per-domain priors) and of the success predictor over the cost
    weight: GPT-4 calls and spend against accuracy, and what random routing needs."""
    rows = np.flatnonzero(~bench.train)
    weak_acc, strong_acc = (float(a) for a in bench.correct[rows].mean(axis=0))
    weak_usd, strong_usd = (float(c) for c in bench.cost[rows].mean(axis=0))
    target = TARGET * strong_acc
    index = bench.index(workdir / f"{bench.name}.npz")
    predictor, trained = bench.predictor(workdir / f"{bench.name}-predictor.npz")
    flat = bench.cards()
    variants = {
        "knn": (flat, "knn", {"knn": {"index": index}}),
        "knn+domain prior": (
            bench.cards(bench.domain_quality()),
            "knn",
            {"knn": {"index": index}},
        ),
        "predicted": (flat, "predicted", {"predictor": {"path": predictor}}),
    }
    curves = {}
    for variant, (cards, strategy, router) in variants.items():

        def point(
            lam: float,
            cards: list[dict] = cards,
            variant: str = variant,
            strategy: str = strategy,
            router: dict = router,
        ) -> dict:
            policy = build_policy(signals, cards, strategy, lam, **router)
            picks = replay(bench, rows, policy)
            share = float(np.mean(picks == 1))
            progress(f"{bench.name} {variant}: cost weight {lam:g} -> {share:.1%} GPT-4 calls")
            return {
                "cost_weight": lam,
                "strong_share": round(share, 4),
                "cost_share": round(float(bench.cost[rows, picks].mean()) / strong_usd, 4),
                "accuracy": round(float(bench.correct[rows, picks].mean()), 4),
            }

        curve = sweep(point, "strong_share", 0.03, cost_weights(bench.cost[rows]))
        accuracy = [p["accuracy"] for p in curve]
        curves[variant] = {
            "points": curve,
            "strong_share_needed": _round(
                first_crossing([p["strong_share"] for p in curve], accuracy, target)
            ),
            "cost_share_needed": _round(
                first_crossing([p["cost_share"] for p in curve], accuracy, target)
            ),
        }
    share = random_share(strong_acc, weak_acc, target)
    return {
        "eval_rows": len(rows),
        "train_rows": int(bench.train.sum()),
        "knn": f"policy defaults (k={KnnConfig().k}, prior_weight={KnnConfig().prior_weight:g}); "
        "index of the train rows",
        "predictor": trained,
        "strong_accuracy": round(strong_acc, 4),
        "weak_accuracy": round(weak_acc, 4),
        "target_accuracy": round(target, 4),
        "cost_per_1k": {"strong": round(strong_usd, 4), "weak": round(weak_usd, 4)},
        "random": {
            "strong_share_needed": round(share, 4),
            "cost_share_needed": round(
                (share * strong_usd + (1 - share) * weak_usd) / strong_usd, 4
            ),
        },
        "curves": curves,
    }


def graded_two_models(
    root: Path, signaller: Signaller, signals: SignalsConfig, workdir: Path
) -> dict:
    """MT-Bench through ``wrp eval routing --data``'s cross-fitting: graded scores, prompt
    tokens counted by the signals and the expected answer length, at RouteLLM's prices."""
    bench, axis = labelled_bench(mt_bench(root), "mt-bench", signaller, ROUTELLM_PRICES)
    folds = prompt_folds(bench)
    return {
        "cost_axis": axis,
        **cross_fit(bench, folds, signals, workdir, list(map(str, range(5)))),
    }


@dataclass(frozen=True)
class RecordedAnswer:
    """A model's recorded answer, as the dispatch ladder reads a call."""

    response: dict[str, Any]
    relayed: bool = False
    error_type: str | None = None


async def recorded_answer(frame: pd.DataFrame, row: int, model: str) -> RecordedAnswer:
    """``model``'s recorded answer to ``row`` (a missing one is empty)."""
    text = frame.at[row, f"{model}_response"]
    content = text if isinstance(text, str) else ""
    return RecordedAnswer({"choices": [{"message": {"content": content}}]})


def cascade(bench: Bench, frame: pd.DataFrame, signals: SignalsConfig) -> dict:
    """The cascade decision's ladder, climbed on the recorded answers as dispatch climbs it
    (:class:`~pipeline.pool.ladder.Ladder`): a rung's answer that fails a check escalates to the
    next rung; every call is paid."""
    rows = np.flatnonzero(~bench.train)
    policy = build_policy(signals, bench.cards(), "cascade")
    runtime = RouterRuntime(rng=np.random.default_rng(ROUTER_SEED))
    position = {model: i for i, model in enumerate(bench.models)}
    served, spent, strong_calls = [], [], 0
    for row in rows:
        decision = route(bench.envelope(int(row)), policy, runtime)
        answers = functools.partial(recorded_answer, frame, int(row))
        climb = asyncio.run(Ladder.of(decision, policy).climb(answers))
        strong_calls += sum(model == STRONG for model, _ in climb.calls)
        spent.append(sum(bench.cost[row, position[model]] for model, _ in climb.calls))
        served.append(bench.correct[row, position[climb.model]])
    return {
        "checks": CASCADE_CHECKS,
        "strong_share": round(strong_calls / len(rows), 4),
        "cost_share": round(float(np.mean(spent) / bench.cost[rows, 1].mean()), 4),
        "accuracy": round(float(np.mean(served)), 4),
    }


# --- part 2: MMLU-Pro, 29 models -------------------------------------------------------------


def load_prices() -> tuple[dict[str, tuple[float, float]], dict[str, dict]]:
    """Price per model, and the tiers as stated in ``routing_prices.yaml``."""
    tiers = yaml.safe_load(PRICES_FILE.read_text())["tiers"]
    prices = {
        model: (tier["price"]["input_per_mtok"], tier["price"]["output_per_mtok"])
        for tier in tiers.values()
        for model in tier["models"]
    }
    return prices, tiers


def output_tokens(root: Path, frame: pd.DataFrame, models: list[str]) -> tuple[np.ndarray, dict]:
    """Answer tokens per (row, model): the model's own answer length at chars / 4 where known
    (> 0), else the question's median over the models that have one, else the global median."""
    chars = pd.read_parquet(data_file(root, "routing/mmlu_pro/output_chars.parquet"))
    chars = frame[["question_id"]].merge(chars, on="question_id", how="left")
    tokens = chars[[f"{m}_5shots" for m in models]].to_numpy(dtype=float) / CHARS_PER_TOKEN
    tokens[~(tokens > 0)] = np.nan
    known = ~np.isnan(tokens)
    global_median = float(np.nanmedian(tokens))
    row_median = np.array(
        [np.median(t[k]) if k.any() else global_median for t, k in zip(tokens, known, strict=True)]
    )
    notes = {
        "prompt_tokens": f"len(question + options) / {CHARS_PER_TOKEN:g} + {FEW_SHOT_TOKENS} "
        "(the five worked examples of the 5-shot CoT prompt, estimated)",
        "output_tokens": f"the model's own answer length in chars / {CHARS_PER_TOKEN:g} where "
        "known (> 0), else the question's median over the models that have one, else the "
        "global median",
        "models_with_lengths": [m for m, k in zip(models, known.any(axis=0), strict=True) if k],
        "global_median_output_tokens": round(global_median, 1),
        "share_of_cells_with_own_length": round(float(known.mean()), 4),
    }
    return np.where(known, tokens, row_median[:, None]), notes


def mmlu_pro_bench(root: Path, signaller: Signaller) -> tuple[Bench, dict, dict]:
    """The MMLU-Pro bench, the token notes and the price tiers."""
    prices, tiers = load_prices()
    frame = datasets.mmlu_pro(root)
    models = [c.removesuffix("_5shots") for c in frame.columns if c.endswith("_5shots")]
    if sorted(models) != sorted(prices):
        raise DataMissing(
            f"MMLU-Pro correctness has models {sorted(models)} but {PRICES_FILE.name} prices "
            f"{sorted(prices)}: make them agree"
        )
    texts = [
        datasets.mmlu_prompt(q, list(o)) for q, o in zip(frame.question, frame.options, strict=True)
    ]
    requests, signals, vectors = signaller.requests("mmlu-pro", texts)
    prompt = np.array(
        [round(len(t) / CHARS_PER_TOKEN) + FEW_SHOT_TOKENS for t in texts], dtype=float
    )
    output, notes = output_tokens(root, frame, models)
    # the routed request is the 5-shot prompt: the router sees its size
    signals = [
        s.model_copy(update={"prompt_tokens": int(n)}) for s, n in zip(signals, prompt, strict=True)
    ]
    model_prices = [prices[m] for m in models]
    bench = Bench(
        "mmlu-pro",
        models,
        model_prices,
        requests,
        signals,
        vectors,
        frame[[f"{m}_5shots" for m in models]].to_numpy(dtype=float),
        usd_per_1k(prompt, output, model_prices),
        (frame.split == "train").to_numpy(),
        frame.src.str.split("-").str[0].to_numpy(),
    )
    return bench, notes, tiers


def many_models(
    bench: Bench, signals: SignalsConfig, index: Path, predictor: Path, trained: dict
) -> dict:
    """Accuracy and USD per 1,000 queries of the strategies (cost-weight sweeps), every single
    model, random routing and the oracle, on the eval rows every model answered."""
    rows = np.flatnonzero(~bench.train & ~np.isnan(bench.correct).any(axis=1))
    correct, cost = bench.correct[rows], bench.cost[rows]
    every = np.arange(len(rows))
    singles = {
        m: {"accuracy": round(float(a), 4), "cost_per_1k": round(float(c), 4)}
        for m, a, c in zip(bench.models, correct.mean(0), cost.mean(0), strict=True)
    }
    cards = bench.cards(bench.domain_quality())

    def point(policy: Policy, lam: float | None) -> dict:
        picks = replay(bench, rows, policy)
        return {
            "cost_weight": lam,
            "accuracy": round(float(correct[every, picks].mean()), 4),
            "cost_per_1k": round(float(cost[every, picks].mean()), 4),
        }

    strategies = {
        "cost_quality": ("cost_quality", {}),
        "knn": ("knn", {"knn": {"index": index}}),
        "predicted": ("predicted", {"predictor": {"path": predictor}}),
    }
    curves = {}
    spread = float(cost.mean(0).max() - cost.mean(0).min())
    for name, (strategy, router) in strategies.items():

        def run(
            lam: float, name: str = name, strategy: str = strategy, router: dict = router
        ) -> dict:
            result = point(build_policy(signals, cards, strategy, lam, **router), lam)
            progress(
                f"mmlu-pro {name}: cost weight {lam:g} -> ${result['cost_per_1k']:.2f} per 1k, "
                f"accuracy {result['accuracy']:.3f}"
            )
            return result

        curves[name] = sweep(run, "cost_per_1k", 0.04 * spread, cost_weights(cost))
    best_train = bench.models[int(np.nanmean(bench.correct[bench.train], axis=0).argmax())]
    static = build_policy(
        signals, [card(best_train, bench.prices[bench.models.index(best_train)])], "static"
    )
    hit, spent = oracle(correct, cost)
    best = max(singles, key=lambda m: singles[m]["accuracy"])
    reference = min(
        (m for m in singles if singles[m]["accuracy"] >= singles[best]["accuracy"] - WITHIN),
        key=lambda m: singles[m]["cost_per_1k"],
    )
    budget = singles[reference]["cost_per_1k"]
    at_budget = {
        name: value_at([p["cost_per_1k"] for p in curve], [p["accuracy"] for p in curve], budget)
        for name, curve in curves.items()
    }
    leader = "predicted"
    oracle_acc = float(hit.mean())
    to_match = {
        name: first_crossing(
            [p["cost_per_1k"] for p in curve],
            [p["accuracy"] for p in curve],
            singles[best]["accuracy"],
        )
        for name, curve in curves.items()
    }
    return {
        "eval_rows": len(rows),
        "eval_rows_dropped": int((~bench.train).sum()) - len(rows),
        "train_rows": int(bench.train.sum()),
        "predictor": trained,
        "singles": singles,
        "random": {
            "accuracy": round(float(correct.mean()), 4),
            "cost_per_1k": round(float(cost.mean()), 4),
        },
        "oracle": {"accuracy": round(oracle_acc, 4), "cost_per_1k": round(float(spent.mean()), 4)},
        "static": {"model": best_train, **point(static, None)},
        "curves": curves,
        "headline": {
            "best_single": best,
            "reference": reference,
            "reference_cost_per_1k": budget,
            "accuracy_at_reference_cost": {k: _round(v) for k, v in at_budget.items()},
            "strategy": leader,
            "share_of_oracle": _round((at_budget[leader] or 0.0) / oracle_acc),
            "reference_share_of_oracle": round(singles[reference]["accuracy"] / oracle_acc, 4),
            "cost_per_1k_to_match_best_single": {k: _round(v) for k, v in to_match.items()},
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def leave_one_source_out(bench: Bench, signals: SignalsConfig, workdir: Path) -> dict:
    """Every MMLU-Pro source (original MMLU, STEM websites, TheoremQA, SciBench) routed by a
    predictor and kNN index built from the other sources only (all their rows)."""
    assert bench.source is not None
    names = sorted(set(bench.source.tolist()))
    folds = np.array([names.index(s) for s in bench.source])
    section = cross_fit(bench, folds, signals, workdir, names)
    return {
        "protocol": "each source's rows routed by a predictor and index of the other sources",
        "sources": {n: int((bench.source == n).sum()) for n in names},
        **section,
    }


# --- part 3: online learning -----------------------------------------------------------------


def learn(bench: Bench, order: np.ndarray, policy: Policy) -> tuple[np.ndarray, float]:
    """Route the stream at one request per second, crediting each answer's recorded correctness
    as feedback through the learner's rules; the rewards in stream order and the explored share."""
    arms: dict[str, RouterState] = {}
    runtime = RouterRuntime(arms=arms, rng=np.random.default_rng(ROUTER_SEED))
    position = {model: i for i, model in enumerate(bench.models)}
    half_life = policy.router.learning.half_life_s
    rewards, explored = np.zeros(len(order)), 0
    for t, row in enumerate(order):
        envelope = bench.envelope(int(row))
        decision = route(envelope, policy, runtime)
        explored += decision.explored
        rewards[t] = bench.correct[row, position[decision.model]]
        feedback = Feedback(
            request_id=envelope.request.request_id,
            score=rewards[t],
            source="eval",
            created_at=float(t),
        )
        served = Served(decision.decision, decision.model, decision.prior, tuple(decision.context))
        credit = credit_feedback(feedback, served)
        key = router_state_key(credit.decision, credit.model)
        arms[key] = fold(arms.get(key), credit, half_life)
    return rewards, explored / len(order)


def trailing(rewards: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` rewards at each step (NaN until the window is full)."""
    total = np.concatenate([[0.0], np.cumsum(rewards)])
    out = np.full(len(rewards), np.nan)
    out[window - 1 :] = (total[window:] - total[:-window]) / window
    return out


def requests_to_reach(rewards: np.ndarray, target: float, window: int) -> int | None:
    """Requests served until the trailing accuracy first reaches ``target``."""
    hits = np.flatnonzero(trailing(rewards, window) >= target)
    return int(hits[0]) + 1 if len(hits) else None


def online(bench: Bench, rows: np.ndarray, signals: SignalsConfig, router: dict) -> dict:
    """Thompson, contextual, knn and predicted learning from a shuffled stream of ``rows``:
    regret against the best fixed model (chosen in hindsight on the stream) and the oracle, the
    regret after :data:`WINDOW` requests, and requests until 90% of the best fixed accuracy."""
    order = np.random.default_rng(STREAM_SEED).permutation(rows)
    correct = bench.correct[order]
    best = int(correct.mean(0).argmax())
    fixed, ceiling = correct[:, best], correct.max(1)
    target = 0.9 * float(fixed.mean())
    step = max(1, len(order) // 250)
    runs = {}
    for strategy in ONLINE:
        progress(f"online {strategy}: {len(order)} requests")
        policy = build_policy(signals, bench.cards(), strategy, 0.0, **router)
        rewards, explored = learn(bench, order, policy)
        every = slice(step - 1, None, step)
        runs[strategy] = {
            "accuracy": round(float(rewards.mean()), 4),
            "explored_share": round(explored, 4),
            "requests_to_target": requests_to_reach(rewards, target, WINDOW),
            "regret_vs_best_fixed": round(float((fixed - rewards).sum()), 1),
            "regret_vs_best_fixed_at_window": round(float((fixed - rewards)[:WINDOW].sum()), 1),
            "regret_vs_oracle": round(float((ceiling - rewards).sum()), 1),
            "curve": {
                "t": list(range(step, len(order) + 1, step)),
                "regret_vs_best_fixed": np.cumsum(fixed - rewards)[every].round(1).tolist(),
                "regret_vs_oracle": np.cumsum(ceiling - rewards)[every].round(1).tolist(),
                "trailing_accuracy": [
                    None if np.isnan(v) else round(float(v), 4)
                    for v in trailing(rewards, WINDOW)[every]
                ],
            },
        }
    return {
        "requests": len(order),
        "stream_seed": STREAM_SEED,
        "router_seed": ROUTER_SEED,
        "window": WINDOW,
        "half_life_s": HALF_LIFE_S,
        "cost_weight": 0.0,
        "feedback": "the served model's recorded correctness as score 1/0, folded before the "
        "next request (one request per second)",
        "priors": "flat card priors (0.5); knn also has the train-row index (policy "
        "defaults), predicted the success predictor of the train rows",
        "best_fixed": {"model": bench.models[best], "accuracy": round(float(fixed.mean()), 4)},
        "oracle_accuracy": round(float(ceiling.mean()), 4),
        "target_accuracy": round(target, 4),
        "strategies": runs,
    }


# --- the command -----------------------------------------------------------------------------


def eval_routing(settings: Settings, out: Path) -> dict:
    """Run parts 1-3, write ``routing.json`` and ``routing.png`` to ``out``; the report."""
    started = time.perf_counter()
    root = data_dir()
    policy = load_policy(settings.policy)
    signaller = Signaller(policy, _cache(settings))
    report: dict[str, Any] = {
        "protocol": "offline replay through pipeline.router.route.route with signals from the "
        "signal extractor (cached embeddings); kNN indexes, per-domain quality priors (train "
        f"accuracy per predicted domain with >= {MIN_DOMAIN_ROWS} rows) and the success "
        "predictor (variant and settings chosen by cross-validation) from train rows only; "
        "every reported number on eval rows; leave-one-source-out: each source routed by a "
        "predictor of the other sources",
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in ("mmlu", "gsm8k"):
            progress(f"part 1: RouteLLM {name}")
            bench, frame = strong_weak_bench(root, name, signaller)
            section = strong_weak(bench, policy.signals, workdir)
            if name == "gsm8k":
                section["cascade"] = cascade(bench, frame, policy.signals)
            report[f"routellm_{name}"] = {
                "prices": {
                    m: {"input_per_mtok": p[0], "output_per_mtok": p[1]}
                    for m, p in zip(bench.models, bench.prices, strict=True)
                },
                "tokens": "prompt: the signals' count; output: MMLU one answer letter, GSM8K "
                f"the recorded answer at chars / {CHARS_PER_TOKEN:g}",
                **section,
            }
        progress("part 1b: MT-Bench, graded by GPT-4, cross-fitted")
        report["mt_bench"] = graded_two_models(root, signaller, policy.signals, workdir)
        progress("part 2: MMLU-Pro")
        bench, notes, tiers = mmlu_pro_bench(root, signaller)
        index = bench.index(workdir / "mmlu-pro.npz")
        predictor, trained = bench.predictor(workdir / "mmlu-pro-predictor.npz")
        section = many_models(bench, policy.signals, index, predictor, trained)
        report["mmlu_pro"] = {"prices": tiers, "tokens": notes, **section}
        progress("part 2b: MMLU-Pro, leave one source out")
        report["mmlu_pro_loso"] = leave_one_source_out(bench, policy.signals, workdir)
        progress("part 3: online learning")
        rows = np.flatnonzero(~bench.train & ~np.isnan(bench.correct).any(axis=1))
        router = {"knn": {"index": index}, "predictor": {"path": predictor}}
        report["online"] = online(bench, rows, policy.signals, router)
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "routing.png")
    report["written"] = [str(out / "routing.json"), str(out / "routing.png")]
    return report


# --- rendering -------------------------------------------------------------------------------


def guard_summary(trained: dict) -> str:
    """The predictor's variant and where, on its validation rows, it did not beat always the
    best single model (the router then routes like that model)."""
    lost = [g["cost_weight"] for g in trained["guard"] if not g["beats_best_single"]]
    head = f"{trained['variant']} {trained['setting']}"
    if not trained["guard"]:
        return f"{head}; too few fully labelled rows to compare with always-one-model"
    if not lost:
        return f"{head}; beats always-one-model on its validation rows at every cost weight"
    return (
        f"{head}; does not beat always-one-model on its validation rows at cost weights "
        f"{lost}: there it routes like the best single model"
    )


def _share(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1%}"


def render(report: dict) -> str:
    """Headline numbers first, then the tables behind them."""
    lines = ["== routing (offline replay through route(); eval rows only)", "headline:"]
    for key, title in (("routellm_mmlu", "MMLU"), ("routellm_gsm8k", "GSM8K")):
        s = report[key]
        needed = [
            f"{name} {_share(c['strong_share_needed'])} ({_share(c['cost_share_needed'])})"
            for name, c in s["curves"].items()
        ]
        r = s["random"]
        needed.append(
            f"random {_share(r['strong_share_needed'])} ({_share(r['cost_share_needed'])})"
        )
        lines.append(
            f"  RouteLLM {title} ({s['eval_rows']} rows): GPT-4 calls (and share of GPT-4 "
            f"spend) needed for 95% of its accuracy ({s['target_accuracy']:.3f}): "
            + ", ".join(needed)
        )
        if "cascade" in s:
            c = s["cascade"]
            lines.append(
                f"    cascade ({'/'.join(c['checks'])} checks on Mixtral's answer): "
                f"{c['strong_share']:.1%} GPT-4 calls ({c['cost_share']:.1%} of GPT-4 spend), "
                f"accuracy {c['accuracy']:.3f}"
            )
    lines.append("    (RouteLLM reports ~55% GPT-4 calls on MMLU; our target is <= 40%)")
    m = report["mt_bench"]
    lines.append(
        f"  MT-Bench ({m['rows']} turns, GPT-4's 1-10 marks / 10, 5-fold cross-fitted): GPT-4 "
        f"{m['best_single']['accuracy']:.3f} at ${m['best_single']['cost_per_1k']:.2f} per 1k, "
        f"Mixtral {m['singles'][WEAK]['accuracy']:.3f}; "
        + ", ".join(
            f"{name} {r['against_best_single']} GPT-4 at its cost and reaches 95% of its mark "
            f"for ${r['cost_per_1k_for_95pct_of_best_single']:.2f}"
            for name, r in m["routed"].items()
        )
    )
    for key in ("routellm_mmlu", "routellm_gsm8k", "mmlu_pro"):
        lines.append(f"    {key} predictor: {guard_summary(report[key]['predictor'])}")
    p = report["mmlu_pro"]
    h = p["headline"]
    lines.append(
        f"  MMLU-Pro ({p['eval_rows']} rows, {len(p['singles'])} models): at "
        f"${h['reference_cost_per_1k']:.3f} per 1k queries (cost of {h['reference']}, the "
        f"cheapest model within {WITHIN * 100:g} accuracy points of the best single "
        f"{h['best_single']}), "
        f"{h['strategy']} reaches accuracy {h['accuracy_at_reference_cost'][h['strategy']]} = "
        f"{_share(h['share_of_oracle'])} of the oracle's {p['oracle']['accuracy']:.3f} "
        f"({h['reference']} alone: {h['reference_share_of_oracle']:.1%})"
    )
    matched = ", ".join(
        f"{name} {'never' if usd is None else f'${usd:.2f}'}"
        for name, usd in h["cost_per_1k_to_match_best_single"].items()
    )
    lines.append(
        f"    USD per 1k queries to match {h['best_single']}'s accuracy "
        f"({p['singles'][h['best_single']]['accuracy']:.3f} at "
        f"${p['singles'][h['best_single']]['cost_per_1k']:.2f}): {matched}"
    )
    loso = report["mmlu_pro_loso"]
    lines.append(
        f"  MMLU-Pro leave-one-source-out ({loso['rows']} rows; each of "
        f"{', '.join(loso['sources'])} routed by a predictor of the others): at the best "
        f"single's cost ({loso['best_single']['model']}, {loso['best_single']['accuracy']:.3f} ="
        f" {loso['oracle']['best_single_share_of_oracle']:.1%} of the oracle) "
        + ", ".join(
            f"{name} {r['accuracy_at_best_single_cost']} = "
            f"{_share(r['share_of_oracle_at_best_single_cost'])}"
            for name, r in loso["routed"].items()
        )
    )
    o = report["online"]
    reached = ", ".join(
        f"{name} {r['requests_to_target'] or 'not reached'}" for name, r in o["strategies"].items()
    )
    ahead = ", ".join(
        f"{name} {r['regret_vs_best_fixed_at_window']:+g}" for name, r in o["strategies"].items()
    )
    lines.append(
        f"  online ({o['requests']} requests): requests until the trailing-{o['window']} "
        f"accuracy reaches 90% of the best fixed model's ({o['best_fixed']['model']}, "
        f"{o['best_fixed']['accuracy']:.3f}): {reached} (the window is full at "
        f"{o['window']})"
    )
    lines.append(
        f"    cumulative regret against the best fixed model after {o['window']} requests "
        f"(below 0: the learner served more correct answers): {ahead}"
    )
    for key in ("routellm_mmlu", "routellm_gsm8k"):
        s = report[key]
        lines.append(
            f"\n{key}: GPT-4 {s['strong_accuracy']:.3f}, Mixtral {s['weak_accuracy']:.3f} "
            f"(${s['cost_per_1k']['strong']:.2f} / ${s['cost_per_1k']['weak']:.2f} per 1k), "
            f"{s['train_rows']} train rows in the index"
        )
        for name, c in s["curves"].items():
            points = ", ".join(f"{q['strong_share']:.0%}:{q['accuracy']:.3f}" for q in c["points"])
            lines.append(f"  {name} (GPT-4 calls:accuracy) {points}")
    t = p["predictor"]
    lines.append(
        f"\nmmlu_pro: {p['eval_rows']} eval rows every model answered ({p['eval_rows_dropped']} "
        f"dropped), {p['train_rows']} train rows; success predictor {t['variant']} "
        f"{t['setting']} ({t['folds']}-fold CV Brier on train rows {t['brier']}, base rates "
        f"{t['brier_of_base_rates']}); tried: {t['cv_brier']}"
    )
    rows = [(m, v["accuracy"], v["cost_per_1k"]) for m, v in p["singles"].items()]
    rows += [
        ("random (uniform)", p["random"]["accuracy"], p["random"]["cost_per_1k"]),
        ("oracle (best, then cheapest)", p["oracle"]["accuracy"], p["oracle"]["cost_per_1k"]),
        (f"static ({p['static']['model']})", p["static"]["accuracy"], p["static"]["cost_per_1k"]),
    ]
    lines.append(f"  {'model / strategy':<40} accuracy  USD per 1k")
    for name, accuracy, cost in sorted(rows, key=lambda r: r[2]):
        lines.append(f"  {name:<40} {accuracy:.3f}     ${cost:.3f}")
    for name, curve in p["curves"].items():
        points = ", ".join(f"${q['cost_per_1k']:.2f}:{q['accuracy']:.3f}" for q in curve)
        lines.append(f"  {name} (cost:accuracy) {points}")
    lines.append(
        f"\nonline: stream seed {o['stream_seed']}, router seed {o['router_seed']}, half-life "
        f"{o['half_life_s']:g} s at one request per second, cost weight {o['cost_weight']}, "
        f"{o['priors']}; oracle accuracy {o['oracle_accuracy']:.3f}"
    )
    for name, r in o["strategies"].items():
        lines.append(
            f"  {name:<11} accuracy {r['accuracy']:.3f}  explored {r['explored_share']:.1%}  "
            f"regret vs best fixed {r['regret_vs_best_fixed']:g}, "
            f"vs oracle {r['regret_vs_oracle']:g}"
        )
    lines.append(f"\n{report['seconds']} s; wrote {', '.join(report.get('written', []))}")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """The curves of the report as one PNG: parts 1 and 2 above, part 3 below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    for ax, key, title in (
        (axes[0, 0], "routellm_mmlu", "RouteLLM MMLU"),
        (axes[0, 1], "routellm_gsm8k", "RouteLLM GSM8K"),
    ):
        s = report[key]
        for name, c in s["curves"].items():
            pts = sorted(c["points"], key=lambda q: q["strong_share"])
            ax.plot(
                [q["strong_share"] for q in pts],
                [q["accuracy"] for q in pts],
                "o-",
                ms=3,
                label=name,
            )
        ax.plot([0, 1], [s["weak_accuracy"], s["strong_accuracy"]], "k--", label="random")
        ax.axhline(s["target_accuracy"], color="grey", lw=0.8, label="95% of GPT-4")
        if "cascade" in s:
            c = s["cascade"]
            ax.plot(c["strong_share"], c["accuracy"], "r*", ms=12, label="cascade")
        ax.set(title=title, xlabel="share of GPT-4 calls", ylabel="accuracy")
        ax.legend(fontsize=8)
    ax = axes[0, 2]
    p = report["mmlu_pro"]
    for name, v in p["singles"].items():
        ax.plot(v["cost_per_1k"], v["accuracy"], "o", color="grey", ms=4)
        ax.annotate(name, (v["cost_per_1k"], v["accuracy"]), fontsize=5)
    for name, curve in p["curves"].items():
        pts = sorted(curve, key=lambda q: q["cost_per_1k"])
        ax.plot(
            [q["cost_per_1k"] for q in pts], [q["accuracy"] for q in pts], "o-", ms=3, label=name
        )
    for name, marker in (("random", "ks"), ("oracle", "g^"), ("static", "bD")):
        ax.plot(p[name]["cost_per_1k"], p[name]["accuracy"], marker, label=name)
    ax.set(
        title="MMLU-Pro, 29 models", xlabel="USD per 1,000 queries", ylabel="accuracy", xscale="log"
    )
    ax.axvline(p["headline"]["reference_cost_per_1k"], color="grey", lw=0.8, ls=":")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    o = report["online"]
    for ax, key, title in (
        (
            axes[1, 0],
            "regret_vs_best_fixed",
            f"cumulative regret vs best fixed ({o['best_fixed']['model']})",
        ),
        (axes[1, 1], "regret_vs_oracle", "cumulative regret vs oracle"),
        (axes[1, 2], "trailing_accuracy", f"trailing-{o['window']} accuracy"),
    ):
        for name, r in o["strategies"].items():
            curve = r["curve"]
            ys = [np.nan if v is None else v for v in curve[key]]
            ax.plot(curve["t"], ys, label=name)
        ax.set(title=title, xlabel="requests")
        ax.legend(fontsize=8)
    axes[1, 2].axhline(o["target_accuracy"], color="grey", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
