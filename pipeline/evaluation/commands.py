"""``wrp router``, ``wrp models`` and ``wrp eval``: build the kNN index, train the success
predictor and the heads, and evaluate them offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.settings import Settings
from pipeline.subcommand import command, settings_from

if TYPE_CHECKING:
    from pipeline.router.labelled import Labelled


def cmd_router(args: argparse.Namespace) -> int:
    from pipeline.router.labelled import LabelsError, read_labelled

    settings = settings_from(args)
    try:
        if args.action == "train" and args.from_analytics:
            data = _analytics_labels(settings, args)
        elif args.labels is None:
            raise LabelsError("give a labels file (JSON lines), or --from-analytics to train")
        else:
            data = read_labelled(args.labels)
    except (OSError, LabelsError) as exc:
        print(f"error: wrp router {args.action}: {exc}", file=sys.stderr)
        return 2
    if args.action == "train":
        return _router_train(settings, data, args)
    from pipeline.models.encoder import load_encoder
    from pipeline.router.labelled import build_index

    encoder = load_encoder(
        settings.model_dir, settings.encoder_threads, settings.encoder_max_tokens
    )
    print(f"embedding {len(data.texts)} labelled requests with {encoder.name} ...", file=sys.stderr)
    index = build_index(data, encoder)
    out = args.out or Path("knn-index.npz")
    index.save(out)
    print(
        f"wrote {out}: {len(data.texts)} requests x {len(index.models)} models "
        f"({', '.join(index.models)}); set router.knn.index to it"
    )
    return 0


def _analytics_labels(settings: Settings, args: argparse.Namespace) -> Labelled:
    from pipeline.analytics.access import AnalyticsUnavailable, query_analytics
    from pipeline.analytics.queries import QueryError
    from pipeline.router.labelled import LabelsError, from_analytics

    params = {"since": args.since, "tenant": args.tenant or ""}
    try:
        result = query_analytics(settings, "labelled", params)
    except (QueryError, AnalyticsUnavailable) as exc:
        raise LabelsError(str(exc)) from None
    data, skipped = from_analytics(result["columns"], result["rows"])
    print(
        f"{len(data.texts)} distinct requests with feedback or a failed outcome in the last "
        f"{args.since}"
        + (f" ({skipped} stored rows could not be read: skipped)" if skipped else ""),
        file=sys.stderr,
    )
    return data


def _router_train(settings: Settings, data: Labelled, args: argparse.Namespace) -> int:
    from pipeline.evaluation.predictor_training import render_training
    from pipeline.evaluation.routing_crossfit import load_prices, train_labelled
    from pipeline.evaluation.routing_replay import Signaller
    from pipeline.evaluation.run import _cache
    from pipeline.policy import load_policy

    try:
        prices = load_prices(args.prices) if args.prices else None
        if prices is not None and (missing := set(data.models) - set(prices)):
            raise ValueError(f"{args.prices}: no price for {', '.join(sorted(missing))}")
        signaller = Signaller(load_policy(settings.policy), _cache(settings))
        predictor, report = train_labelled(data, "router-train", signaller, prices)
    except (OSError, ValueError) as exc:
        print(f"error: wrp router train: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("predictor.npz")
    predictor.save(out)
    print(json.dumps(report, indent=2) if args.json else render_training(report))
    print(f"wrote {out}; set router.predictor.path to it and a decision's strategy to predicted")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline.evaluation.run import SAFETY_HEADS, SIGNAL_HEADS, train_heads

    names = [*SIGNAL_HEADS, *SAFETY_HEADS] if args.name == "all" else [args.name]
    train_heads(settings_from(args), names)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.target == "tools":
        return _eval_tools(args)
    if args.target == "implicit":
        from pipeline.evaluation import implicit_eval
        from pipeline.evaluation.run import _cache
        from pipeline.policy import load_policy

        settings = settings_from(args)
        config = load_policy(settings.policy).router.learning.implicit
        report = implicit_eval.eval_implicit(_cache(settings), config)
        print(json.dumps(report, indent=2) if args.json else implicit_eval.render(report))
        return 0
    if args.target == "routing" and args.data:
        return _eval_routing_data(args)
    if args.target == "sticky":
        from pipeline.evaluation import sticky_replay
        from pipeline.evaluation.run import _cache
        from pipeline.policy import load_policy

        settings = settings_from(args)
        report = sticky_replay.eval_sticky(
            load_policy(settings.policy), _cache(settings), args.out or settings.state_dir / "eval"
        )
        print(json.dumps(report, indent=2) if args.json else sticky_replay.render(report))
        return 0
    if args.target == "routing":
        from pipeline.evaluation import routing, routing_report

        settings = settings_from(args)
        report = routing.eval_routing(settings, args.out or settings.state_dir / "eval")
        print(json.dumps(report, indent=2) if args.json else routing_report.render(report))
        return 0
    if args.target == "answers":
        from pipeline.evaluation import answers_eval
        from pipeline.settings import data_dir

        settings = settings_from(args)
        report = answers_eval.eval_answers(settings.policy, data_dir())
        print(json.dumps(report, indent=2) if args.json else answers_eval.render(report))
        return 0
    from pipeline.evaluation.run import eval_safety, eval_signals, render

    report = (eval_signals if args.target == "signals" else eval_safety)(settings_from(args))
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def _eval_tools(args: argparse.Namespace) -> int:
    from pipeline.evaluation import tool_selection
    from pipeline.models.encoder import load_encoder
    from pipeline.policy import load_policy
    from pipeline.settings import data_dir

    settings = settings_from(args)
    policy = load_policy(settings.policy)
    encoder = load_encoder(
        settings.model_dir,
        settings.encoder_threads,
        settings.encoder_max_tokens,
        settings.encoder_batch,
    )
    report = tool_selection.eval_tools(data_dir(), encoder, policy, tune=args.tune)
    written = tool_selection.write(report, args.out or settings.state_dir / "eval")
    print(json.dumps(report, indent=2) if args.json else tool_selection.render(report))
    print(f"wrote {written}")
    return 0


def _eval_routing_data(args: argparse.Namespace) -> int:
    import tempfile

    from pipeline.evaluation import routing_crossfit
    from pipeline.evaluation.routing_replay import Signaller
    from pipeline.evaluation.run import _cache
    from pipeline.policy import load_policy
    from pipeline.router.labelled import LabelsError, read_labelled

    settings = settings_from(args)
    try:
        if args.folds < 2:
            raise LabelsError(f"--folds {args.folds}: cross-fitting needs at least 2 folds")
        data = read_labelled(args.data)
        prices = routing_crossfit.load_prices(args.prices) if args.prices else None
        if prices is not None and (missing := set(data.models) - set(prices)):
            raise LabelsError(f"{args.prices}: no price for {', '.join(sorted(missing))}")
        policy = load_policy(settings.policy)
        with tempfile.TemporaryDirectory() as tmp:
            report = routing_crossfit.eval_labelled(
                data,
                args.data.stem,
                Signaller(policy, _cache(settings)),
                policy.signals,
                Path(tmp),
                prices,
                args.folds,
            )
    except (OSError, ValueError) as exc:
        print(f"error: wrp eval routing: {exc}", file=sys.stderr)
        return 2
    out = args.out or settings.state_dir / "eval"
    report["written"] = routing_crossfit.write(report, out, f"routing-{args.data.stem}")
    print(json.dumps(report, indent=2) if args.json else routing_crossfit.render(report))
    print(f"wrote {', '.join(report['written'])}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``router``, ``models``, ``eval`` to ``wrp``."""
    p = command(
        sub,
        "router",
        cmd_router,
        "index: build the kNN index of labelled requests; train: fit the success predictor "
        "(strategy predicted) on labelled requests or on the feedback and outcomes in analytics",
        "wrp router index labels.jsonl --out index.npz",
        "wrp router train --from-analytics --since 30d",
    )
    p.add_argument("action", choices=["index", "train"], help="build the index or train")
    p.add_argument(
        "labels",
        type=Path,
        nargs="?",
        help="JSON lines: {text, labels: {model: score 0..1}, optional cost, tokens per model}",
    )
    p.add_argument("--out", type=Path, help="knn-index.npz / predictor.npz")
    p.add_argument(
        "--from-analytics",
        action="store_true",
        help="train: label requests with their feedback (a failed call scores 0) from ClickHouse",
    )
    p.add_argument("--since", default="30d", help="--from-analytics: how far back (30d)")
    p.add_argument("--tenant", help="--from-analytics: one tenant's traffic (default: all)")
    p.add_argument("--prices", type=Path, help="train: YAML {model: {input_per_mtok, ...}}")
    p.add_argument("--json", action="store_true", help="train: the report as JSON")
    p = command(
        sub,
        "models",
        cmd_models,
        "train a head from ../shared/data and write its model card",
        "wrp models train all",
    )
    p.add_argument("action", choices=["train"], help="train a head")
    p.add_argument(
        "name", choices=["domain", "complexity", "safety", "moderation", "all"], help="which head"
    )
    p = command(
        sub,
        "eval",
        cmd_eval,
        "held-out metrics of the signal or safety models, routing, sticky sessions, tool "
        "selection, the implicit-feedback detector or answer screening",
        "wrp eval signals",
        "wrp eval routing --data my-labels.jsonl --folds 5",
    )
    p.add_argument(
        "target",
        choices=["signals", "safety", "routing", "sticky", "tools", "implicit", "answers"],
        help="what to evaluate",
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument(
        "--out", type=Path, help="routing, sticky, tools: output directory (<state-dir>/eval)"
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="tools: the tuning grid on the tune rows instead of the report on the test rows",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="routing: evaluate on this labelled set instead (JSON lines as for wrp router "
        "index: text, labels per model 0..1, optional cost or tokens), cross-fitted",
    )
    p.add_argument(
        "--prices",
        type=Path,
        help="routing --data: YAML {model: {input_per_mtok, "
        "output_per_mtok}} to cost the file's tokens",
    )
    p.add_argument("--folds", type=int, default=5, help="routing --data: cross-fitting folds")
