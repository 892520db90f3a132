"""Running simulators: every simulated endpoint of a policy, or one endpoint from flags."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
from pathlib import Path
from urllib.parse import urlparse

from fastapi import FastAPI

from pipeline.http_server import serve_http
from pipeline.policy import load_policy
from pipeline.pool.sim.engine import EngineConfig
from pipeline.pool.sim.simulator import simulator_app


async def _serve_until_signal(apps: list[tuple[FastAPI, int]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = [await serve_http(app, port) for app, port in apps]
    await stop.wait()
    for _, server in servers:
        server.should_exit = True
    for task, _ in servers:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def required_key(env_name: str | None) -> str | None:
    """The key a simulator requires: the value of ``env_name`` (None: no key check)."""
    if env_name is None:
        return None
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise SystemExit(f"the simulator's key check needs the environment variable {env_name}")
    return key


async def serve_policy_pools(policy_path: Path, no_latency: bool = False) -> None:
    """One HTTP server per endpoint of every pool that has a ``simulator`` section."""
    policy = load_policy(policy_path)
    apps = []
    for pool in policy.pools:
        sim = pool.simulator
        if sim is None:
            continue
        api_key = required_key(sim.api_key_env)
        models = [m for m in policy.models if m.pool == pool.name]
        config = EngineConfig(max_num_seqs=sim.max_num_seqs, kv_blocks=sim.kv_blocks)
        for endpoint in pool.endpoints:
            url = urlparse(endpoint.url)
            if url.hostname not in ("127.0.0.1", "localhost"):
                raise SystemExit(
                    f"pool {pool.name}: a simulated endpoint must be on 127.0.0.1, "
                    f"not {endpoint.url}"
                )
            app = simulator_app(
                pool.gpu,
                sim.model,
                [m.name for m in models],
                max(m.context_length for m in models),
                speed=math.inf if no_latency else sim.speed,
                config=config,
                name=pool.name,
                gpus=pool.gpus_per_endpoint,
                api_key=api_key,
            )
            apps.append((app, url.port or 80))
    await _serve_until_signal(apps)


async def serve_single(args: argparse.Namespace) -> None:
    app = simulator_app(
        args.gpu,
        args.engine_model,
        args.model or ["sim-model"],
        args.max_model_len,
        speed=math.inf if args.no_latency else args.speed,
        config=EngineConfig(max_num_seqs=args.max_num_seqs),
        api_key=required_key(args.api_key_env),
    )
    await _serve_until_signal([(app, args.port)])
