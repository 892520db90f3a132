"""Fixtures: the real embedded stack (Tansu, simulators, every stage, chdb) in a temporary folder,
on free ports."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest
import yaml

from pipeline.api_keys import digest
from pipeline.settings import DEFAULT_POLICY, STAGE_PORT_OFFSETS, Settings
from pipeline.stack import SEPARATE_STAGES, Stack
from tests.integration.faults import start_fault_server

#: The gateway's API keys for tenants ``acme`` and ``beta`` in the test stack.
API_KEY = "wrp-test-key-acme"
OTHER_KEY = "wrp-test-key-beta"

pytestmark = pytest.mark.integration


#: Ports handed out this session: most are bound only later, by child processes, so the OS
#: alone cannot stop two fixtures from picking the same one.
_HANDED_OUT: set[int] = set()
_PICK = random.Random()


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_range(count: int) -> int:
    """First port of ``count`` consecutive free ports, none handed out before. They lie below the
    kernel's ephemeral range: a port the OS picked (bind to 0) can be taken by any outgoing
    connection (a Kafka client, say) before the child process that should listen on it binds."""
    high = _ephemeral_low() - count
    low = max(1024, high - 20000)
    for _ in range(1000):
        base = _PICK.randrange(low, high)
        ports = range(base, base + count)
        if _HANDED_OUT.isdisjoint(ports) and all(_bindable(port) for port in ports):
            _HANDED_OUT.update(ports)
            return base
    raise RuntimeError(f"no {count} free consecutive ports in {low}-{high}")


def free_port() -> int:
    return free_port_range(1)


#: Pools whose endpoints fail on purpose (tests/integration/faults.py), with their models
#: ``wrp-fault-<pool>``: (endpoint modes, pool settings).
FAULT_POOLS = {
    "err500": (["500", "500"], {}),
    "err429": (["429"], {"retries": 0}),
    "garbage": (["garbage"], {"retries": 0}),
    "half": (["half"], {"retries": 0}),
    "hang": (["hang"], {"retries": 0, "timeout_s": 1}),
    "rejects": (["400", "400"], {}),
    "retry": (["500", "ok"], {}),
    "breaker": (["500"], {"retries": 0, "circuit": {"failures": 2, "open_s": 600}}),
    "narrow": (["slow"], {"max_in_flight": 1}),
    "held": (["hold"], {"retries": 0}),
    "slow": (["slow", "slow"], {}),
    "flaky": (
        ["switch-flaky-a", "switch-flaky-b"],
        {"retries": 1, "circuit": {"failures": 2, "open_s": 2}},
    ),
}


def test_policy(path: Path, fault_port: int) -> Path:
    """The default policy on free simulator ports, plus a pool nobody serves and pools whose
    endpoints fail on purpose; a ``faultdrill`` keyword routes to a failing model with a
    fallback."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    for pool in data["pools"]:
        for endpoint in pool["endpoints"]:
            endpoint["url"] = f"http://127.0.0.1:{free_port()}"
        pool["simulator"]["speed"] = 100
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
    for name, (modes, settings) in FAULT_POOLS.items():
        urls = [{"url": f"http://127.0.0.1:{fault_port}/{mode}"} for mode in modes]
        data["pools"].append({"name": name, "endpoints": urls, "backoff_ms": 10, **settings})
        data["models"].append(
            {
                "name": f"wrp-fault-{name}",
                "pool": name,
                "context_length": 8192,
                "price": {"input_per_mtok": 0, "output_per_mtok": 0},
            }
        )
    data["signals"]["keywords"].append({"name": "faultdrill", "any": ["faultdrill"]})
    data["router"]["decisions"].append(
        {
            "name": "fault_drill",
            "priority": 200,
            "when": {"all": [{"signal": "keyword.faultdrill", "equals": True}]},
            "models": ["wrp-fault-err500", "wrp-small-8b"],
            "strategy": "static",
        }
    )
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    root = tmp_path_factory.mktemp("wrp")
    fault_port = free_port()
    start_fault_server(fault_port)
    settings = Settings(
        broker=f"127.0.0.1:{free_port()}",
        state_dir=root / "state",
        policy=test_policy(root / "policy.yaml", fault_port),
        gateway_port=free_port(),
        api_keys=f"acme:{digest(API_KEY)},beta:{digest(OTHER_KEY)}",
        metrics_port_base=free_port_range(len(STAGE_PORT_OFFSETS)),
    )
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    try:
        # every stage a process of its own, as the deployment manifests run them (the fused
        # embedded default has a stack of its own in test_fused.py)
        stack.start(stages=SEPARATE_STAGES)
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


def run(coro):
    return asyncio.run(coro)
