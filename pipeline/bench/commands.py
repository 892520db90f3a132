"""``wrp bench TARGET``: run one benchmark and print its JSON report."""

from __future__ import annotations

import argparse
import json

from pipeline.subcommand import command, settings_from


def cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "classify":
        from pipeline.bench.classify import run_classify_bench

        report = run_classify_bench(settings_from(args), args.n, args.threads)
    elif args.target == "gateway":
        from pipeline.bench.gateway import run_gateway_bench

        report = run_gateway_bench(settings_from(args), args.n)
    elif args.target == "envelope":
        from pipeline.bench.envelope import run_envelope_bench

        report = run_envelope_bench(settings_from(args), args.saturate, args.duration)
    elif args.target == "analytics":
        from pipeline.bench.analytics import run_analytics_bench

        report = run_analytics_bench(settings_from(args), args.rows, args.total, repeat=5)
    elif args.target == "budgets":
        from pipeline.bench.budgets import run_budgets_bench

        report = run_budgets_bench(settings_from(args), args.n)
    elif args.target == "answers":
        from pipeline.bench.answers import run_answers_bench

        report = run_answers_bench(settings_from(args), args.chunks_per_read)
    elif args.target == "pools":
        from pipeline.bench.pools import run_pools_bench

        run_pools_bench(settings_from(args).state_dir / "bench", args.limit)
        return 0
    else:
        from pipeline.bench.overhead import run_pipeline_bench

        report = run_pipeline_bench(settings_from(args), args.rate, args.duration)
    print(json.dumps(report, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to ``wrp``."""
    p = command(
        sub,
        "bench",
        cmd_bench,
        "pipeline: the whole pipeline at steady offered rates; classify: signals + safety logic "
        "in one process against a bare onnxruntime loop on the same texts",
        "wrp bench pipeline --rate 25",
        "wrp bench classify -n 2000",
    )
    p.add_argument(
        "target",
        help="what to measure",
        choices=[
            "envelope",
            "pipeline",
            "classify",
            "pools",
            "gateway",
            "analytics",
            "budgets",
            "answers",
        ],
    )
    p.add_argument(
        "--chunks-per-read",
        type=int,
        default=1,
        help="answers: chunk events the relay gets at once (1: a read per token)",
    )
    p.add_argument(
        "--saturate", type=int, default=1500, help="envelope: requests published at once"
    )
    p.add_argument("--limit", type=int, default=2000, help="pools: requests per trace")
    p.add_argument(
        "--rows", type=int, default=100_000, help="analytics: envelopes through the sink"
    )
    p.add_argument("--total", type=int, default=1_000_000, help="analytics: table rows to query")
    p.add_argument("--rate", type=float, default=20, help="pipeline: offered requests/s")
    p.add_argument(
        "--duration", type=float, default=20, help="pipeline, envelope: seconds per rate"
    )
    p.add_argument(
        "-n",
        type=int,
        default=2000,
        help="classify: prompts; gateway: requests per path; budgets: sequential requests "
        "(use ~100)",
    )
    p.add_argument("--threads", type=int, default=2, help="classify: ONNX intra-op threads")
