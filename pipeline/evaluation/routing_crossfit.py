"""`wrp eval routing --data FILE`: routing quality on any labelled set, cross-fitted.

The rows of the file (:mod:`pipeline.router.labelled`) are split into k folds by a hash of the
prompt (or by any grouping, e.g. the source for leave-one-source-out). For each fold a success
predictor (``wrp router train``'s code) and a kNN index are built from the other folds only, and
the fold's rows are routed through the real ``route()`` while the cost weight is swept (below 0
too, to trace the curve past the estimates' own best). Every row is therefore scored by a router
that never saw it. Reported, on the rows with every model's label: the accuracy-cost curve of
the ``predicted`` and ``knn`` strategies, every single model, random routing and the oracle (per
row the best score, the cheapest among equals); the USD per 1,000 requests needed for 95% of
the best single model's accuracy; the accuracy at the best single model's cost as a share of
the oracle's; and whether the router beat always sending everything to the best single model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.evaluation.predictor_training import FOLDS, train_predictor
from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_replay import (
    TARGET,
    Bench,
    Signaller,
    build_policy,
    cost_weights,
    first_crossing,
    oracle,
    replay,
    rounded,
    sweep,
    usd_per_1k,
    value_at,
)
from pipeline.evaluation.split import fold_of
from pipeline.policy import SignalsConfig
from pipeline.router.labelled import Labelled, LabelsError
from pipeline.router.predictor import SuccessPredictor

ROUTED = ("predicted", "knn")


def load_prices(path: Path) -> dict[str, tuple[float, float]]:
    """``{model: {input_per_mtok, output_per_mtok}}`` from YAML or JSON."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of model -> input/output USD per 1M tokens")
    try:
        return {
            str(m): (float(p["input_per_mtok"]), float(p["output_per_mtok"]))
            for m, p in raw.items()
        }
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{path}: every model needs input_per_mtok and output_per_mtok (USD per 1M tokens)"
        ) from None


def labelled_bench(
    data: Labelled,
    name: str,
    signaller: Signaller,
    prices: dict[str, tuple[float, float]] | None = None,
) -> tuple[Bench, str]:
    """A :class:`Bench` of the labelled rows and how its cost axis was made. Cost per row and
    model is the file's USD (x 1,000), else tokens at ``prices`` (the file's, else the signals'
    prompt count and expected answer), else none. The router's cards carry ``prices``, else a
    flat per-token price giving each model its mean cost."""
    models = data.models
    requests, signals, vectors = signaller.requests(name, data.texts)
    tokens = np.full((len(data.texts), len(models), 2), np.nan)
    for i, row in enumerate(data.tokens):
        for j, model in enumerate(models):
            if model in row:
                tokens[i, j] = row[model]
    prompt = np.nanmedian(tokens[:, :, 0], axis=1) if data.tokens and any(data.tokens) else None
    if prompt is not None:
        known = ~np.isnan(prompt)
        signals = [
            s.model_copy(update={"prompt_tokens": int(n)}) if ok else s
            for s, n, ok in zip(signals, prompt, known, strict=True)
        ]
    prompt_tokens = np.array([s.prompt_tokens for s in signals], dtype=float)
    answer_tokens = np.array([s.expected_output_tokens for s in signals], dtype=float)
    if any(data.costs):
        cost = 1000 * data.matrix(data.costs, models)
        unpriced = [
            m for m, known in zip(models, ~np.isnan(cost).all(axis=0), strict=True) if not known
        ]
        if unpriced:
            raise LabelsError(
                f"no cost for {', '.join(unpriced)} on any line: give every model a cost, or "
                "tokens and --prices"
            )
        cost = np.where(np.isnan(cost), np.nanmean(cost, axis=0), cost)
        axis = "the file's cost per request"
    elif prices is not None:
        # the file's completion tokens where it has them, else the signals' expected answer
        completion = np.where(np.isnan(tokens[:, :, 1]), answer_tokens[:, None], tokens[:, :, 1])
        cost = usd_per_1k(prompt_tokens, completion, [prices[m] for m in models])
        axis = "tokens (the file's, else the signals' estimates) at the given prices"
    else:
        cost = np.zeros((len(data.texts), len(models)))
        axis = "none (no cost in the file, no --prices for its tokens): accuracy only"
    cost = np.nan_to_num(cost)
    if prices is not None:
        card_prices = [prices[m] for m in models]
    else:
        per_token = cost.mean(axis=0) / 1000 / max(float((prompt_tokens + answer_tokens).mean()), 1)
        card_prices = [(1e6 * p, 1e6 * p) for p in per_token]
    bench = Bench(
        name,
        models,
        card_prices,
        requests,
        signals,
        vectors,
        data.matrix(data.labels, models),
        cost,
        np.ones(len(data.texts), dtype=bool),
    )
    return bench, axis


def prompt_folds(bench: Bench, folds: int = FOLDS) -> np.ndarray:
    return np.array([fold_of(bench.text(row), folds) for row in range(len(bench.requests))])


def cross_fit(
    bench: Bench, folds: np.ndarray, signals: SignalsConfig, workdir: Path, names: list[str]
) -> dict[str, Any]:
    """Route every scored row with a predictor and index built without its fold (see module)."""
    scored = ~np.isnan(bench.correct).any(axis=1)
    if scored.sum() < 2:
        raise LabelsError(
            "fewer than two requests carry every model's label: routing cannot be scored "
            "(each row needs a score for every model it compares)"
        )
    parts = [f for f in np.unique(folds) if (scored & (folds == f)).any()]
    if len(np.unique(folds)) < 2:
        raise LabelsError("cross-fitting needs at least two folds with distinct prompts")
    policies: dict[str, list[tuple[np.ndarray, dict]]] = {name: [] for name in ROUTED}
    training: list[dict] = []
    for f in parts:
        held, rest = np.flatnonzero(scored & (folds == f)), np.flatnonzero(folds != f)
        progress(f"{bench.name}: fold {names[int(f)]} ({len(held)} rows), training on {len(rest)}")
        predictor, report = train_predictor(bench.training_set(rest, f"inner{f}"), progress)
        path = workdir / f"{bench.name}-predictor-{f}.npz"
        predictor.save(path)
        index = bench.index(workdir / f"{bench.name}-index-{f}.npz", rest)
        training.append({"fold": names[int(f)], "rows": len(held), **report})
        policies["predicted"].append((held, {"predictor": {"path": path}}))
        policies["knn"].append((held, {"knn": {"index": index}}))
    rows = np.concatenate([held for held, _ in policies["predicted"]])
    correct, cost = bench.correct[rows], bench.cost[rows]
    spread = float(np.ptp(cost.mean(axis=0)))
    cards = bench.cards()
    curves = {}
    for strategy in ROUTED:

        def run(lam: float, strategy: str = strategy) -> dict:
            picks = np.concatenate(
                [
                    replay(bench, held, build_policy(signals, cards, strategy, lam, **router))
                    for held, router in policies[strategy]
                ]
            )
            every = np.arange(len(picks))
            point = {
                "cost_weight": round(lam, 8),
                "accuracy": round(float(correct[every, picks].mean()), 4),
                "cost_per_1k": round(float(cost[every, picks].mean()), 6),
            }
            progress(
                f"{bench.name} {strategy}: cost weight {lam:g} -> ${point['cost_per_1k']:.4f} "
                f"per 1k, accuracy {point['accuracy']:.4f}"
            )
            return point

        curves[strategy] = sweep(run, "cost_per_1k", 0.04 * spread, cost_weights(cost))
    return summary(bench, correct, cost, curves, training)


def summary(
    bench: Bench,
    correct: np.ndarray,
    cost: np.ndarray,
    curves: dict[str, list[dict]],
    training: list[dict],
) -> dict[str, Any]:
    """The metrics of the module docstring from the routed curves of the scored rows."""
    singles = {
        m: {"accuracy": round(float(a), 4), "cost_per_1k": round(float(c), 6)}
        for m, a, c in zip(bench.models, correct.mean(0), cost.mean(0), strict=True)
    }
    best = max(singles, key=lambda m: (singles[m]["accuracy"], -singles[m]["cost_per_1k"]))
    best_acc, best_cost = singles[best]["accuracy"], singles[best]["cost_per_1k"]
    hit, spent = oracle(correct, cost)
    oracle_acc = float(hit.mean())
    routed = {}
    for name, curve in curves.items():
        xs, ys = [p["cost_per_1k"] for p in curve], [p["accuracy"] for p in curve]
        at_best = value_at(xs, ys, best_cost)
        routed[name] = {
            "points": curve,
            "best_accuracy": max(ys),
            "accuracy_at_best_single_cost": rounded(at_best),
            "share_of_oracle_at_best_single_cost": rounded((at_best or 0.0) / oracle_acc),
            "cost_per_1k_for_95pct_of_best_single": rounded(
                first_crossing(xs, ys, TARGET * best_acc)
            ),
            "against_best_single": _against(at_best, best_acc),
        }
    return {
        "rows": len(correct),
        "models": len(bench.models),
        "singles": singles,
        "best_single": {"model": best, "accuracy": best_acc, "cost_per_1k": best_cost},
        "random": {
            "accuracy": round(float(correct.mean()), 4),
            "cost_per_1k": round(float(cost.mean()), 6),
        },
        "oracle": {
            "accuracy": round(oracle_acc, 4),
            "cost_per_1k": round(float(spent.mean()), 6),
            "best_single_share_of_oracle": round(best_acc / oracle_acc, 4),
        },
        "routed": routed,
        "training": training,
    }


def _against(accuracy: float | None, best: float) -> str:
    """``beats``, ``matches`` or ``loses to`` the best single model at its cost."""
    if accuracy is None or accuracy < best - 1e-9:
        return "loses to"
    return "beats" if accuracy > best + 1e-9 else "matches"


def train_labelled(
    data: Labelled,
    name: str,
    signaller: Signaller,
    prices: dict[str, tuple[float, float]] | None = None,
) -> tuple[SuccessPredictor, dict[str, Any]]:
    """``wrp router train``: the predictor of every labelled row and its training report."""
    bench, axis = labelled_bench(data, name, signaller, prices)
    predictor, report = train_predictor(
        bench.training_set(np.arange(len(data.texts)), "train"), progress
    )
    return predictor, {"cost_axis": axis, **report}


def eval_labelled(
    data: Labelled,
    name: str,
    signaller: Signaller,
    signals: SignalsConfig,
    workdir: Path,
    prices: dict[str, tuple[float, float]] | None = None,
    folds: int = FOLDS,
) -> dict[str, Any]:
    started = time.perf_counter()
    bench, axis = labelled_bench(data, name, signaller, prices)
    section = cross_fit(
        bench, prompt_folds(bench, folds), signals, workdir, [str(f) for f in range(folds)]
    )
    return {
        "data": name,
        "protocol": f"{folds}-fold cross-fitting by a hash of the prompt: each fold routed "
        "through route() by a predictor and kNN index built from the other folds only",
        "cost_axis": axis,
        **section,
        "seconds": round(time.perf_counter() - started, 1),
    }


def render(report: dict[str, Any]) -> str:
    b, o = report["best_single"], report["oracle"]
    lines = [
        f"== routing on {report['data']} ({report['rows']} rows with every label, "
        f"{report['models']} models; {report['protocol']})",
        f"  cost axis: {report['cost_axis']}",
        f"  best single {b['model']}: accuracy {b['accuracy']:.4f} at ${b['cost_per_1k']:.4f} "
        f"per 1k; oracle {o['accuracy']:.4f} (best single = {o['best_single_share_of_oracle']:.1%}"
        f" of it); random {report['random']['accuracy']:.4f}",
    ]
    for name, r in report["routed"].items():
        needed = r["cost_per_1k_for_95pct_of_best_single"]
        lines.append(
            f"  {name}: accuracy at the best single's cost {r['accuracy_at_best_single_cost']} "
            f"= {_pct(r['share_of_oracle_at_best_single_cost'])} of the oracle; best accuracy "
            f"{r['best_accuracy']:.4f}; USD per 1k for 95% of the best single: "
            f"{'never' if needed is None else f'${needed:.4f}'}; "
            f"{r['against_best_single']} the best single at its cost"
        )
    for fold in report["training"]:
        lost = [g["cost_weight"] for g in fold["guard"] if not g["beats_best_single"]]
        lines.append(
            f"  fold {fold['fold']}: predictor {fold['variant']} {fold['setting']} (cv brier "
            f"{fold['brier']} vs {fold['brier_of_base_rates']} for base rates); "
            + (
                f"on its validation rows it does not beat the best single at cost weights {lost}:"
                " there it routes like the best single"
                if lost
                else "beats the best single on its validation rows"
                if fold["guard"]
                else "too few fully labelled rows to compare with the best single"
            )
        )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for name, v in report["singles"].items():
        ax.plot(v["cost_per_1k"], v["accuracy"], "o", color="grey", ms=4)
        ax.annotate(name, (v["cost_per_1k"], v["accuracy"]), fontsize=6)
    for name, r in report["routed"].items():
        pts = sorted(r["points"], key=lambda q: q["cost_per_1k"])
        ax.plot(
            [q["cost_per_1k"] for q in pts], [q["accuracy"] for q in pts], "o-", ms=3, label=name
        )
    for name, marker in (("random", "ks"), ("oracle", "g^")):
        ax.plot(report[name]["cost_per_1k"], report[name]["accuracy"], marker, label=name)
    ax.set(
        title=f"{report['data']}: cross-fitted routing",
        xlabel="USD per 1,000 requests",
        ylabel="mean score",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict[str, Any], out: Path, stem: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(report, out / f"{stem}.png")
    return [str(out / f"{stem}.json"), str(out / f"{stem}.png")]
