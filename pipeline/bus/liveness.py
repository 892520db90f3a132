"""Liveness of the pipeline, told by the stages themselves: every stage process publishes a
:class:`~pipeline.envelope.StageHealth` on ``wrp.stage-health`` every few seconds, so anyone
tailing the topic (the gateway) knows which stages have a live process, on any Kafka and
without knowing where the processes run. (Consumer-group membership would say the same on a
real Kafka, but the embedded broker keeps a killed member in its group indefinitely.)"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from pipeline.bus.catalog import STAGE_HEALTH
from pipeline.bus.codec import encode
from pipeline.envelope import StageHealth

log = logging.getLogger(__name__)

#: Seconds between a stage's heartbeats; one is stale after :data:`STALE_AFTER` intervals.
HEARTBEAT_S = 2.0
STALE_AFTER = 4
#: The stages a request passes through before it is answered: the gateway needs them all.
REQUEST_PATH = ("signals", "safety", "router", "dispatch")


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def heartbeat(process: str, stages: list[str], state: str, instance: str) -> StageHealth:
    return StageHealth(
        process=process, stages=stages, instance=instance, state=state, interval_s=HEARTBEAT_S
    )


async def send_heartbeat(producer: Any, process: str, state: str, instance: str) -> None:
    """Say on ``wrp.stage-health`` that ``process`` (``a+b``: the stages it runs) is
    ``state``."""
    health = heartbeat(process, process.split("+"), state, instance)
    await producer.send_and_wait(STAGE_HEALTH, encode(health), key=health.key.encode())


async def beat(producer: Any, process: str, state: Callable[[], str], instance: str) -> None:
    """Send ``process``'s heartbeat, in its current ``state()``, every :data:`HEARTBEAT_S`."""
    while True:
        try:
            await send_heartbeat(producer, process, state(), instance)
        except KafkaError as exc:  # the next beat retries; the gateway sees a gap meanwhile
            log.warning("stage %s: heartbeat failed: %r", process, exc)
        await asyncio.sleep(HEARTBEAT_S)


def live_stages(records: dict[str, StageHealth], now: float) -> set[str]:
    """Stages with at least one process whose last word is fresh and not "stopping"."""
    return {
        stage
        for health in records.values()
        if health.state != "stopping" and now - health.at <= STALE_AFTER * health.interval_s
        for stage in health.stages
    }


def missing_stages(records: dict[str, StageHealth], now: float) -> list[str]:
    """The request path's stages without a live process, in path order."""
    live = live_stages(records, now)
    return [stage for stage in REQUEST_PATH if stage not in live]
