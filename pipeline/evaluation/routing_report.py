"""The report of ``wrp eval routing``: headline numbers and tables as text, the curves as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluation.routing_benches import WEAK
from pipeline.evaluation.routing_many_models import WITHIN


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
