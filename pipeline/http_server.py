"""Serving an ASGI app inside a running event loop: stage health and metrics, the simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _QuietServer(uvicorn.Server):
    """uvicorn server that leaves signal handling to the stage runner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(
    app: FastAPI, port: int, host: str = "127.0.0.1"
) -> tuple[asyncio.Task[None], _QuietServer]:
    """Start ``app`` on ``host:port`` inside the running loop."""
    server = _QuietServer(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the bind error
            raise RuntimeError(f"HTTP server on {host}:{port} stopped while starting")
        await asyncio.sleep(0.02)
    return task, server
