"""A pool behind auth: `wrp sim --policy` (what `wrp up` runs) with its key check on, called by
dispatch's pool client with the key the pool's ``auth`` names, with a wrong one and with none."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import yaml

from pipeline.policy import Pool, load_policy
from pipeline.pool.dispatcher import Dispatcher, PoolCall
from pipeline.pool.selection import RequestShape
from pipeline.settings import DEFAULT_POLICY
from tests.integration.conftest import free_port, run

pytestmark = pytest.mark.integration

SIM_KEY = "sk-sim-integration-7f3a"
SHAPE = RequestShape(key="auth-1", prompt_tokens=4, output_tokens=4, blocks=())


def keyed_policy(path: Path, port: int) -> Path:
    """The default policy with only pool ``small`` simulated, on ``port``, behind a key."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    for pool in data["pools"]:
        if pool["name"] == "small":
            pool["endpoints"] = [{"url": f"http://127.0.0.1:{port}/v1"}]
            pool["simulator"]["api_key_env"] = "WRP_TEST_SIM_KEY"
            pool["auth"] = {"api_key_env": "WRP_TEST_POOL_KEY"}
            pool["backoff_ms"] = 0
        else:
            del pool["simulator"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sim(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "sim", *args],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def keyed_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The keyed policy, its simulator serving it until the module ends."""
    root = tmp_path_factory.mktemp("pool-auth")
    port = free_port()
    policy = keyed_policy(root / "policy.yaml", port)
    proc = sim(
        ["--policy", str(policy), "--no-latency"],
        {"WRP_TEST_SIM_KEY": SIM_KEY},
        root / "sim.log",
    )
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (root / "sim.log").read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the keyed simulator did not come up"
        time.sleep(0.2)
    yield policy
    proc.terminate()
    proc.wait(timeout=30)


async def call(pool: Pool, stream: bool = False) -> PoolCall:
    chunks: list[dict[str, Any]] = []

    async def relay(batch: list[dict[str, Any]]) -> None:
        chunks.extend(batch)

    body = {"model": "wrp-small-8b", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(session)
        dispatcher.sync([pool])
        result = await dispatcher.call(
            pool, {**body, "max_tokens": 4}, SHAPE, None, relay if stream else None
        )
    assert not stream or result.error_type or chunks
    return result


def test_calls_with_the_pools_key_are_served_plain_and_streamed(
    keyed_sim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRP_TEST_POOL_KEY", SIM_KEY)
    pool = load_policy(keyed_sim).pool("small")
    for stream in (False, True):
        result = run(call(pool, stream))
        assert result.error_type is None, result.error
        assert result.response["usage"]["completion_tokens"] == 4
        assert SIM_KEY not in repr(result)


def test_a_wrong_key_is_pool_unauthorized_without_retry_and_none_is_misconfigured(
    keyed_sim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = load_policy(keyed_sim).pool("small")
    monkeypatch.setenv("WRP_TEST_POOL_KEY", "sk-wrong-key")
    refused = run(call(pool))
    monkeypatch.delenv("WRP_TEST_POOL_KEY")
    unset = run(call(pool))
    assert refused.error_type == "pool_unauthorized" and refused.attempts == 1
    assert "sk-wrong-key" not in (refused.error or "") and "401" in (refused.error or "")
    assert unset.error_type == "pool_misconfigured"
    assert "credentials are not configured" in (unset.error or "")
    assert "WRP_TEST_POOL_KEY" not in (unset.error or "")


def test_a_simulator_told_to_check_a_key_it_lacks_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WRP_TEST_ABSENT_KEY"}
    args = ["sim", "--port", str(free_port()), "--api-key-env", "WRP_TEST_ABSENT_KEY"]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "WRP_TEST_ABSENT_KEY" in done.stderr + done.stdout
