"""Running simulators: every simulated endpoint of a policy, or one endpoint from flags."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from urllib.parse import urlparse

from pipeline.bus.health import serve_http
from pipeline.policy import SimulatorProfile, load_policy
from pipeline.pool.simulator import simulator_app

INSTANT = SimulatorProfile(prefill_ms_per_token=0, decode_ms_per_token=0, max_concurrency=10_000)


async def _serve_until_signal(apps: list[tuple[object, int]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = [await serve_http(app, port) for app, port in apps]  # type: ignore[arg-type]
    await stop.wait()
    for _, server in servers:
        server.should_exit = True
    for task, _ in servers:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def serve_policy_pools(policy_path: Path, no_latency: bool = False) -> None:
    """One HTTP server per endpoint of every pool that has a ``simulator`` profile."""
    policy = load_policy(policy_path)
    apps = []
    for pool in policy.pools:
        if pool.simulator is None:
            continue
        models = [m for m in policy.models if m.pool == pool.name]
        profile = INSTANT if no_latency else pool.simulator
        for endpoint in pool.endpoints:
            url = urlparse(endpoint.url)
            if url.hostname not in ("127.0.0.1", "localhost"):
                raise SystemExit(
                    f"pool {pool.name}: a simulated endpoint must be on 127.0.0.1, "
                    f"not {endpoint.url}"
                )
            app = simulator_app(
                profile, [m.name for m in models], max(m.context_length for m in models), pool.name
            )
            apps.append((app, url.port or 80))
    await _serve_until_signal(apps)


async def serve_single(args: argparse.Namespace) -> None:
    profile = (
        INSTANT
        if args.no_latency
        else SimulatorProfile(
            prefill_ms_per_token=args.prefill_ms_per_token,
            decode_ms_per_token=args.decode_ms_per_token,
            max_concurrency=args.max_concurrency,
        )
    )
    app = simulator_app(profile, args.model or ["sim-model"], args.max_model_len)
    await _serve_until_signal([(app, args.port)])
