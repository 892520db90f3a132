"""Part 2 of ``wrp eval routing``: MMLU-Pro's 29 models, accuracy against USD per 1,000 queries
of the routing strategies, single models, random routing and the oracle; and each source routed
by what the other sources taught (leave-one-source-out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_crossfit import cross_fit
from pipeline.evaluation.routing_replay import (
    Bench,
    build_policy,
    card,
    cost_weights,
    first_crossing,
    oracle,
    replay,
    rounded,
    sweep,
    value_at,
)
from pipeline.policy import Policy, SignalsConfig

#: Part 2 reference: the cheapest single model within this of the best single model's accuracy.
WITHIN = 0.05


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
            "accuracy_at_reference_cost": {k: rounded(v) for k, v in at_budget.items()},
            "strategy": leader,
            "share_of_oracle": rounded((at_budget[leader] or 0.0) / oracle_acc),
            "reference_share_of_oracle": round(singles[reference]["accuracy"] / oracle_acc, 4),
            "cost_per_1k_to_match_best_single": {k: rounded(v) for k, v in to_match.items()},
        },
    }


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
