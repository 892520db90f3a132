"""``wrp demo`` and ``wrp replay``: workloads driven through the pipeline: the demo (a sample
workload on an embedded stack of its own, with a report), or a workload file or a serving
trace's requests published to a running one."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from pipeline.settings import DEMO_WORKLOAD
from pipeline.subcommand import command, settings_from


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.run import run_demo

    return run_demo(settings_from(args), Path(args.workload), args.rate)


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.client import load_workload, replay
    from pipeline.pool.sim import traces

    settings = settings_from(args)
    schedule = None
    if args.trace:
        try:
            traced = traces.load_trace(args.trace, args.limit)
        except traces.UnknownTrace as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        traced = traces.rescale(traced, speed=args.speed)
        print(f"trace {args.trace} at speed {args.speed:g}\n{traces.summarise(traced).render()}")
        run = f"{time.time_ns():x}"  # a fresh id prefix: not a retry of an earlier replay
        requests = [traces.trace_request_section(r, run=run) for r in traced]
        schedule = [r.arrival_s for r in traced]
    else:
        requests = load_workload(Path(args.file))[: args.limit]
    answers = asyncio.run(
        replay(settings.broker, requests, args.rate, args.timeout, schedule=schedule)
    )
    statuses: dict[str, int] = {}
    for env in answers.values():
        status = env.result.status if env.result else "unknown"
        statuses[status] = statuses.get(status, 0) + 1
    print(
        f"{len(answers)}/{len(requests)} answered: "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    return 0 if len(answers) == len(requests) else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``, ``replay`` to ``wrp``."""
    p = command(
        sub,
        "demo",
        cmd_demo,
        "run the whole pipeline on a sample workload and report",
        "wrp demo --rate 25",
    )
    p.add_argument("--workload", default=str(DEMO_WORKLOAD), help="JSON lines of requests")
    p.add_argument("--rate", type=float, default=25, help="requests per second (%(default)s)")
    p = command(
        sub,
        "replay",
        cmd_replay,
        "publish a workload file (JSON lines) or a serving trace's requests and await answers",
        "wrp replay workloads/demo.jsonl --rate 20",
        "wrp replay --trace mooncake --speed 10 --limit 500",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON lines, one request (or OpenAI body) each")
    source.add_argument(
        "--trace", metavar="NAME", help="azure-conv, azure-code or mooncake, at trace times"
    )
    p.add_argument("--rate", type=float, default=20, help="file requests per second (0 = max)")
    p.add_argument("--speed", type=float, default=1.0, help="trace time compression (2 = 2x)")
    p.add_argument("--limit", type=int, help="only the first N requests")
    p.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for the answers (%(default)s)"
    )
