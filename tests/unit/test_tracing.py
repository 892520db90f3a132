"""Trace context through stages: the traceparent is passed along without an OTLP endpoint, and
with one each stage's span per request is a child of the one before it; request ids in logs."""

from __future__ import annotations

import asyncio
import io
import logging

from pydantic import BaseModel

from pipeline.bus.fused import FusedStage
from pipeline.bus.stage import Inbound, Outbound, Output, Pending, Stage
from pipeline.envelope import Attempt, ChatRequest, Envelope, RequestSection
from pipeline.settings import Settings
from pipeline.tracing import (
    LOG_FORMAT,
    TRACEPARENT_HEADER,
    RequestIdFilter,
    Tracing,
    new_traceparent,
    traceparent_of,
    tracing_for,
    valid_traceparent,
)
from tests.otlp_receiver import OtlpReceiver

CLIENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
log = logging.getLogger("tests.tracing")


class Served(BaseModel):
    """A record of one request with the endpoint calls that served it."""

    request_id: str
    attempt_log: list[Attempt]


class Forward(Stage):
    name = "first"
    topics = ("in",)

    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        return [Outbound("middle", None, item.message) for item in batch]


class Call(Stage):
    name = "last"
    topics = ("middle",)
    concurrency = 4

    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        return [Pending(item, lambda env=item.message: self.call(env)) for item in batch]

    async def call(self, env: Envelope) -> list[Output]:
        log.warning("calling the pool")
        rid = env.request.request_id
        attempt = Attempt(
            model="m", pool="p", endpoint="http://e:1", status="ok", started_at=1.0, latency_ms=5
        )
        return [
            Outbound("out", rid, env),
            Outbound("outcomes", rid, Served(request_id=rid, attempt_log=[attempt])),
        ]


def envelope() -> Envelope:
    return Envelope(
        request=RequestSection(body=ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    )


def inbound(env: Envelope, traceparent: str | None) -> Inbound:
    return Inbound("in", 0, 0, b"", env, traceparent=traceparent)


async def finished(outputs: list[Output | Pending]) -> list[Outbound]:
    done: list[Outbound] = []
    for out in outputs:
        done.extend(await out.outputs() if isinstance(out, Pending) else [out])  # type: ignore[list-item]
    return done


def test_traceparents_are_read_from_headers_and_checked():
    assert valid_traceparent(CLIENT) == CLIENT
    assert valid_traceparent(new_traceparent()) is not None
    for bad in (
        "",
        "garbage",
        CLIENT.replace("4bf9", "zzzz"),
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
    ):
        assert valid_traceparent(bad) is None
    assert traceparent_of([("request_id", b"r"), (TRACEPARENT_HEADER, CLIENT.encode())]) == CLIENT
    assert traceparent_of(None) is None


def test_without_an_endpoint_the_traceparent_is_passed_along_unchanged():
    settings = Settings()
    assert not tracing_for(settings, "x").enabled
    fused = FusedStage(settings, [Forward(settings), Call(settings)])
    env, bare = envelope(), envelope()
    outputs = asyncio.run(
        finished(
            asyncio.run(
                fused.process_traced([inbound(env, CLIENT), inbound(bare, None)], Tracing())
            )
        )
    )
    by_request = {(o.topic, o.key): o.traceparent for o in outputs}
    rid, other = env.request.request_id, bare.request.request_id
    assert by_request[("out", rid)] == by_request[("outcomes", rid)] == CLIENT
    made = by_request[("out", other)]
    assert valid_traceparent(made) and made != CLIENT and by_request[("outcomes", other)] == made


def test_with_an_endpoint_each_part_spans_the_request_as_a_child_of_the_one_before():
    receiver = OtlpReceiver()
    try:
        settings = Settings(otlp_endpoint=receiver.endpoint)
        tracing = tracing_for(settings, "fused")
        fused = FusedStage(settings, [Forward(settings), Call(settings)])
        env = envelope()
        outputs = asyncio.run(
            finished(asyncio.run(fused.process_traced([inbound(env, CLIENT)], tracing)))
        )
        tracing.shutdown()  # exports what is buffered
        trace_id, client_span = CLIENT.split("-")[1:3]
        spans = {s.name: s for s in receiver.of_trace(trace_id)}
        assert set(spans) == {"first", "last", "dispatch.attempt"}
        assert spans["first"].parent_span_id == client_span
        assert spans["last"].parent_span_id == spans["first"].span_id
        assert spans["dispatch.attempt"].parent_span_id == spans["last"].span_id
        assert spans["dispatch.attempt"].attributes["wrp.endpoint"] == "http://e:1"
        assert spans["first"].attributes["wrp.request_id"] == env.request.request_id
        last = f"00-{trace_id}-{spans['last'].span_id}-01"
        assert {o.traceparent for o in outputs} == {last}
    finally:
        receiver.stop()


def test_log_lines_of_pending_work_name_its_request():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    log.addHandler(handler)
    try:
        settings = Settings()
        env = envelope()
        stage = Call(settings)
        asyncio.run(finished(asyncio.run(stage.process_traced([inbound(env, None)], Tracing()))))
        log.warning("outside any request")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert f"[{env.request.request_id}]: calling the pool" in lines[0]
    assert "[-]: outside any request" in lines[1]
