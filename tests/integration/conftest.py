"""Fixtures: the real embedded stack (Tansu, simulators, every stage, chdb) in a temporary folder,
on free ports."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import yaml

from pipeline.settings import DEFAULT_POLICY, STAGE_PORT_OFFSETS, Settings
from pipeline.stack import Stack

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(count: int) -> int:
    """First port of ``count`` consecutive free ports."""
    for _ in range(200):
        base = free_port()
        if base + count >= 65535:
            continue
        ports_free = True
        for port in range(base, base + count):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    ports_free = False
                    break
        if ports_free:
            return base
    raise RuntimeError("no free port range")


def test_policy(path: Path) -> Path:
    """The default policy on free simulator ports, plus a pool nobody serves (for failures)."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    for pool in data["pools"]:
        for endpoint in pool["endpoints"]:
            endpoint["url"] = f"http://127.0.0.1:{free_port()}"
        pool["simulator"]["decode_ms_per_token"] = 0.5
    data["pools"].append(
        {
            "name": "down",
            "endpoints": [{"url": f"http://127.0.0.1:{free_port()}"}],
            "timeout_s": 2,
            "retries": 1,
        }
    )
    data["models"].append(
        {
            "name": "wrp-unreachable",
            "pool": "down",
            "context_length": 8192,
            "price": {"input_per_mtok": 0, "output_per_mtok": 0},
        }
    )
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    root = tmp_path_factory.mktemp("wrp")
    settings = Settings(
        broker=f"127.0.0.1:{free_port()}",
        state_dir=root / "state",
        policy=test_policy(root / "policy.yaml"),
        metrics_port_base=free_port_range(len(STAGE_PORT_OFFSETS)),
    )
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


def run(coro):
    return asyncio.run(coro)
