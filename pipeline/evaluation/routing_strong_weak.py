"""Part 1 of ``wrp eval routing``: the strong/weak pair (GPT-4 vs Mixtral) routed over the cost
weight on RouteLLM's benches, and MT-Bench's graded turns cross-fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_benches import ROUTELLM_PRICES, mt_bench
from pipeline.evaluation.routing_crossfit import cross_fit, labelled_bench, prompt_folds
from pipeline.evaluation.routing_replay import (
    TARGET,
    Bench,
    Signaller,
    build_policy,
    cost_weights,
    first_crossing,
    random_share,
    replay,
    rounded,
    sweep,
)
from pipeline.policy import KnnConfig, SignalsConfig


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
            "strong_share_needed": rounded(
                first_crossing([p["strong_share"] for p in curve], accuracy, target)
            ),
            "cost_share_needed": rounded(
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
