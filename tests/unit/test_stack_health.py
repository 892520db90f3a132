"""What a stack waits for before it says it has started: with the whole request path among its
stages, the gateway's readiness (it has heard every stage's heartbeat), else its liveness."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.stack import FRONT, Stack


def gateway_check(stages: tuple[str, ...], tmp_path: Path) -> str:
    stack = Stack(Settings(state_dir=tmp_path), broker_port=9092)
    stack.processes["gateway"] = None  # type: ignore[assignment]  # only its presence counts
    return stack.health_urls(stages, simulators=False)["gateway"].rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("stages", "check"),
    [
        ((FRONT, "learner", "analytics"), "readyz"),
        (("signals", "safety", "router", "dispatch"), "readyz"),
        (("signals+safety", "router+dispatch"), "readyz"),
        (("router",), "healthz"),  # one stage restarted: the rest may still be on its way
        (("signals", "safety", "router"), "healthz"),
    ],
)
def test_a_stack_waits_for_the_gateway_to_be_ready_when_it_starts_the_whole_path(
    stages, check, tmp_path
):
    assert gateway_check(stages, tmp_path) == check
