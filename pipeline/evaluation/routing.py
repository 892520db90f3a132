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
   (:mod:`~pipeline.evaluation.routing_strong_weak`, :mod:`~pipeline.evaluation.routing_cascade`)
2. MMLU-Pro, 29 models at the prices of ``routing_prices.yaml``: accuracy against USD per 1,000
   queries for cost_quality, knn and predicted over the cost weight, the model best on train
   rows, every single model, random routing and the oracle; and leave-one-source-out.
   (:mod:`~pipeline.evaluation.routing_many_models`)
3. Online learning on the MMLU-Pro eval rows as a stream: cumulative regret of thompson,
   contextual, knn and predicted against the best fixed model and the oracle.
   (:mod:`~pipeline.evaluation.routing_online`)

The benches come from :mod:`~pipeline.evaluation.routing_benches`; the text and the PNG from
:mod:`~pipeline.evaluation.routing_report`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_benches import mmlu_pro_bench, strong_weak_bench
from pipeline.evaluation.routing_cascade import cascade
from pipeline.evaluation.routing_many_models import leave_one_source_out, many_models
from pipeline.evaluation.routing_online import online
from pipeline.evaluation.routing_replay import MIN_DOMAIN_ROWS, Signaller
from pipeline.evaluation.routing_report import plot
from pipeline.evaluation.routing_strong_weak import graded_two_models, strong_weak
from pipeline.evaluation.run import _cache
from pipeline.evaluation.tasks import CHARS_PER_TOKEN
from pipeline.policy import load_policy
from pipeline.settings import Settings, data_dir


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
