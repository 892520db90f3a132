"""Liveness of the pipeline, told by the stages themselves: every stage process publishes a
:class:`~pipeline.envelope.StageHealth` on ``wrp.stage-health`` every few seconds, so anyone
tailing the topic (the gateway) knows which stages have a live process, on any Kafka and
without knowing where the processes run. (Consumer-group membership would say the same on a
real Kafka, but the embedded broker keeps a killed member in its group indefinitely.)"""

from __future__ import annotations

import os
import socket

from pipeline.envelope import StageHealth

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
