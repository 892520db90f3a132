"""``wrp drill NAME``: the trust drills on an embedded stack of their own."""

from __future__ import annotations

import argparse
import json

from pipeline.subcommand import command, settings_from


def cmd_drill(args: argparse.Namespace) -> int:
    from pipeline.drills.run import DRILLS, run_drills

    names = list(DRILLS) if args.name == "all" else [args.name]
    report = run_drills(
        settings_from(args), names, args.count, args.restarts, args.per_round, args.seed
    )
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``drill`` to ``wrp``."""
    p = command(
        sub,
        "drill",
        cmd_drill,
        "trust drills on an embedded stack of their own: fuzz (generated and mutated records "
        "straight onto wrp.requests, each accounted for), restart (stop and start the stack "
        "with traffic in between, every request counted once, learning and cache restored), pii "
        "(PII down every path, then ClickHouse, logs and the report searched for it), or all",
        "wrp drill fuzz --count 1000",
        "wrp drill all",
    )
    p.add_argument("name", choices=["fuzz", "restart", "pii", "all"], help="which drill")
    p.add_argument("--count", type=int, default=10_000, help="fuzz: records")
    p.add_argument("--seed", type=int, default=0, help="fuzz: generator seed")
    p.add_argument("--restarts", type=int, default=3, help="restart: stops and starts")
    p.add_argument("--per-round", type=int, default=40, help="restart: requests per round")
