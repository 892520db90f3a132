"""``wrp sim``: serve simulated pools over HTTP, or what-if a fleet serves a trace."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pipeline.subcommand import command, settings_from


def cmd_sim_fleet(args: argparse.Namespace) -> int:
    from pipeline.policy import Endpoint, PolicyError, Pool, SelectionConfig, load_policy
    from pipeline.pool.gpu import MODELS
    from pipeline.pool.sim import fleet, traces

    if not args.trace:
        print(
            "error: wrp sim fleet needs --trace (azure-conv, azure-code or mooncake)",
            file=sys.stderr,
        )
        return 2
    try:
        requests = traces.load_trace(args.trace, args.limit)
        if args.pool:
            pool = load_policy(settings_from(args).policy).pool(args.pool)
            model = pool.simulator.model if pool.simulator else args.engine_model
        else:
            selection = SelectionConfig(policy=args.selection, boundary_tokens=args.boundary_tokens)
            pool = Pool(
                name="fleet",
                gpus_per_endpoint=MODELS[args.engine_model].tp,
                gpu=args.gpu,
                endpoints=[Endpoint(url="http://sim-fleet")],
                selection=selection,
            )
            model = args.engine_model
    except (traces.UnknownTrace, PolicyError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.rate:
        requests = traces.rescale(requests, rate_per_s=args.rate)
    if args.endpoints:
        pool = fleet.endpoint_urls(pool, args.endpoints)
    print(f"trace {args.trace}: {traces.summarise(requests).render()}", flush=True)
    print(
        f"pool: {len(pool.endpoints)} x {pool.gpu} ({pool.gpus_per_endpoint} GPU each) serving "
        f"{model}, selection {pool.selection.policy}, SLO p99 TTFT <= {args.slo_ttft}s",
        flush=True,
    )
    if args.smallest:
        report = fleet.smallest_fleet(
            requests,
            pool,
            model,
            args.slo_ttft,
            args.max_endpoints,
            progress=lambda r: print(
                f"  {r.endpoints:>3} endpoints: p99 TTFT {r.ttft_p99_s:.3f}s", flush=True
            ),
        )
        if report is None:
            print(f"no fleet of up to {args.max_endpoints} endpoints meets the SLO")
            return 1
    else:
        report = fleet.simulate(requests, pool, model, args.slo_ttft)
    print(json.dumps(report.row(), indent=2) if args.json else report.render())
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from pipeline.pool.sim.server import serve_policy_pools, serve_single

    if args.mode == "fleet":
        return cmd_sim_fleet(args)
    if args.policy:
        asyncio.run(serve_policy_pools(settings_from(args).policy, no_latency=args.no_latency))
    else:
        asyncio.run(serve_single(args))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sim`` to ``wrp``."""
    p = command(
        sub,
        "sim",
        cmd_sim,
        "serve simulated OpenAI-compatible pools: with --policy every "
        "simulated endpoint of the policy (what `wrp up` does), else one endpoint; "
        "`wrp sim fleet --trace T`: what-if a pool serves a trace (no sockets, virtual time)",
        "wrp sim --policy policies/default.yaml",
        "wrp sim fleet --trace azure-conv --endpoints 8 --selection context_length",
    )
    p.add_argument(
        "mode",
        nargs="?",
        choices=["serve", "fleet"],
        default="serve",
        help="serve pools over HTTP, or simulate a fleet on a trace (%(default)s)",
    )
    p.add_argument("--trace", help="fleet: azure-conv, azure-code or mooncake")
    p.add_argument("--limit", type=int, default=2000, help="fleet: first N requests of the trace")
    p.add_argument("--rate", type=float, help="fleet: scale arrivals to this mean req/s")
    p.add_argument(
        "--pool", help="fleet: take the pool (GPU, endpoints, selection) from the policy"
    )
    p.add_argument("--endpoints", type=int, help="fleet: number of endpoints")
    p.add_argument(
        "--selection",
        default="least_outstanding",
        choices=[
            "round_robin",
            "least_outstanding",
            "power_of_two",
            "prefix_affinity",
            "kv_aware",
            "context_length",
        ],
        help="fleet: endpoint selection policy (without --pool)",
    )
    p.add_argument("--boundary-tokens", type=int, help="fleet: context_length split")
    p.add_argument("--slo-ttft", type=float, default=1.0, help="fleet: p99 TTFT SLO, seconds")
    p.add_argument("--smallest", action="store_true", help="fleet: search the fewest endpoints")
    p.add_argument(
        "--max-endpoints", type=int, default=64, help="fleet --smallest: search up to this many"
    )
    p.add_argument("--json", action="store_true", help="fleet: the report as JSON")
    p.add_argument("--no-latency", action="store_true", help="answer at once (benchmarks)")
    p.add_argument("--port", type=int, default=8101, help="serve: port (%(default)s)")
    p.add_argument("--model", action="append", help="served model name (repeatable)")
    p.add_argument(
        "--max-model-len", type=int, default=32768, help="context length in tokens (%(default)s)"
    )
    p.add_argument(
        "--gpu", default="A100", choices=["A10G", "A100", "H100"], help="simulated GPU (A100)"
    )
    p.add_argument(
        "--engine-model",
        default="llama-3.1-8b",
        choices=["llama-3.1-8b", "llama-3.1-70b"],
        help="size and KV shape of the simulated model",
    )
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    p.add_argument(
        "--max-num-seqs", type=int, default=256, help="concurrent sequences per endpoint (256)"
    )
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="answer 401 unless called with the key in env var NAME (as vLLM's --api-key)",
    )
