"""The analytics sink run in this process against a lone Tansu broker, for tests that inject
faults into its store or consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.bus.admin import create_topics
from pipeline.bus.broker import start_broker
from pipeline.bus.catalog import load_catalog
from pipeline.bus.runner import StageRunner
from pipeline.settings import Settings
from pipeline.stages.analytics import AnalyticsStage
from tests.integration.conftest import free_port
from tests.integration.helpers import until


@contextmanager
def lone_broker(tmp_path: Path, **overrides) -> Iterator[Settings]:
    """A broker on a free port, and settings that reach it with state in ``tmp_path``."""
    port = free_port()
    broker = start_broker(port, tmp_path / "broker.log")
    try:
        yield Settings(
            broker=f"127.0.0.1:{port}",
            state_dir=tmp_path,
            metrics_port_base=free_port(),
            **overrides,
        )
    finally:
        broker.terminate()
        broker.wait(30)


async def running_sink(settings: Settings) -> tuple[AnalyticsStage, StageRunner, asyncio.Task]:
    """Create the topics, start the sink, return once it consumes."""
    await create_topics(settings.broker, load_catalog())
    stage = AnalyticsStage(settings)
    runner = StageRunner(stage, settings)
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.status["state"] == "running", "the sink to start")
    return stage, runner, task
