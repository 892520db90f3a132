"""``wrp demo``: the whole pipeline on a sample workload, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.settings import DEMO_WORKLOAD
from pipeline.subcommand import command, settings_from


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.run import run_demo

    return run_demo(settings_from(args), Path(args.workload), args.rate)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to ``wrp``."""
    p = command(
        sub,
        "demo",
        cmd_demo,
        "run the whole pipeline on a sample workload and report",
        "wrp demo --rate 25",
    )
    p.add_argument("--workload", default=str(DEMO_WORKLOAD), help="JSON lines of requests")
    p.add_argument("--rate", type=float, default=25, help="requests per second (%(default)s)")
