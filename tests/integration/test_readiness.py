"""The gateway's readiness follows the pipeline: a stage of the request path that stops or dies
makes ``/readyz`` and chat requests answer 503 at once, and its return makes them ready again."""

from __future__ import annotations

import signal

import httpx
import pytest

from pipeline.bus.catalog import STAGE_HEALTH
from pipeline.bus.codec import decode
from pipeline.envelope import StageHealth
from tests.integration.conftest import API_KEY, run
from tests.integration.helpers import eventually, read_topic

pytestmark = pytest.mark.integration

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "are you ready?"}]}


def ready(stack) -> httpx.Response:
    return httpx.get(f"{stack.gateway_url}/readyz", timeout=10)


def health_records(stack) -> list[StageHealth]:
    return [
        decode(r.value, StageHealth) for r in run(read_topic(stack.settings.broker, STAGE_HEALTH))
    ]


def chat(stack) -> httpx.Response:
    headers = {"authorization": f"Bearer {API_KEY}"}
    url = f"{stack.gateway_url}/v1/chat/completions"
    return httpx.post(url, json=HELLO, headers=headers, timeout=60)


@pytest.mark.parametrize(
    ("stage", "sig"), [("router", signal.SIGTERM), ("dispatch", signal.SIGKILL)]
)
def test_a_stopped_or_killed_stage_makes_the_gateway_unready_until_it_returns(stack, stage, sig):
    eventually(lambda: ready(stack).status_code == 200, what="a ready pipeline")
    pid = stack.processes[stage].pid
    stack.stop_process(stage, sig=sig)
    if sig == signal.SIGTERM:  # a clean stop says so at once; a killed one goes stale
        last = [h for h in health_records(stack) if h.instance.endswith(f"-{pid}")][-1]
        assert last.state == "stopping"
    try:
        unready = eventually(
            lambda: (r := ready(stack)).status_code == 503 and r, what=f"{stage} missed"
        )
        assert unready.json()["missing"] == [stage]
        refused = chat(stack)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        assert stage in refused.json()["error"]["message"]
    finally:
        stack.spawn(stage, ["stage", stage])
        stack.wait_healthy((stage,), simulators=False)
    eventually(lambda: ready(stack).status_code == 200, what=f"{stage} back")
    assert chat(stack).status_code == 200
