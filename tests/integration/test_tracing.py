"""Tracing on a stack of its own whose stages export spans to an in-process OTLP receiver: one
request sent through the gateway with a client's traceparent makes one trace, each stage's span a
child of the one before, the dispatch attempt a child of dispatch's."""

from __future__ import annotations

import httpx
import pytest

from pipeline.settings import STAGE_PORT_OFFSETS, Settings
from pipeline.stack import Stack
from tests.integration import conftest
from tests.integration.conftest import API_KEY, digest, free_port, free_port_range
from tests.integration.helpers import eventually
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
PATH = ("gateway", "signals", "safety", "router", "dispatch")


@pytest.fixture(scope="module")
def receiver():
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory, receiver):
    root = tmp_path_factory.mktemp("traced")
    settings = Settings(
        broker=f"127.0.0.1:{free_port()}",
        state_dir=root / "state",
        policy=conftest.test_policy(root / "policy.yaml", free_port()),
        gateway_port=free_port(),
        api_keys=f"acme:{digest(API_KEY)}",
        metrics_port_base=free_port_range(len(STAGE_PORT_OFFSETS)),
        otlp_endpoint=receiver.endpoint,
    )
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    try:  # the request path only, each stage a process of its own: the header crosses Kafka
        stack.start(stages=PATH[1:])
    except Exception:
        stack.stop()
        raise
    yield stack
    stack.stop()


def test_the_spans_of_one_request_form_one_trace_continuing_the_clients(traced_stack, receiver):
    reply = httpx.post(
        f"{traced_stack.gateway_url}/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
        },
        json={"model": "auto", "messages": [{"role": "user", "content": "trace me, please"}]},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    request_id = reply.headers["x-wrp-request-id"]

    def whole_trace():
        spans = {s.name: s for s in receiver.of_trace(TRACE_ID)}
        return spans if {*PATH, "dispatch.attempt"} <= set(spans) else None

    spans = eventually(whole_trace, timeout_s=60, what="a span from every stage")
    parent = CLIENT_SPAN
    for stage in PATH:  # each stage's span is a child of the one before it
        assert spans[stage].parent_span_id == parent, stage
        assert spans[stage].service == f"wrp-{stage}"
        assert spans[stage].attributes["wrp.request_id"] == request_id
        assert spans[stage].attributes["wrp.tenant"] == "acme"
        parent = spans[stage].span_id
    assert spans["dispatch.attempt"].parent_span_id == spans["dispatch"].span_id
    assert spans["dispatch.attempt"].attributes["wrp.attempt_status"] == "ok"
    assert spans["dispatch.attempt"].attributes["wrp.endpoint"].startswith("http")
    router = spans["router"].attributes
    assert router["wrp.decision"] and router["wrp.model"] and router["wrp.strategy"]
