"""W3C trace context through the pipeline, OpenTelemetry spans per stage, request ids in logs.

Every record of a request carries a ``traceparent`` Kafka header. The gateway continues the
client's (or starts one); each stage reads it from the records it consumes and puts it on what it
produces. Without an OTLP endpoint (``WRP_OTLP_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``)
that is all: no tracer provider, no span objects, the header is only passed along. With one, each
stage opens a span per request as a child of the incoming traceparent (attributes: request id,
tenant, stage; the decision, model and strategy once routed; dispatch adds a child span per
endpoint attempt) and forwards the new span's traceparent; spans are exported in batches over
OTLP/HTTP (protobuf) off the hot path.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.settings import Settings

TRACEPARENT_HEADER = "traceparent"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")

#: The request being handled, for log lines (``-`` outside any request).
request_id_var: ContextVar[str] = ContextVar("wrp_request_id", default="-")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    """Gives every log record the ``request_id`` being handled where it was emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def log_request_ids() -> None:
    """Every handler of the root logger stamps its records with the request id."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())


def new_traceparent() -> str:
    """A new trace, sampled."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def valid_traceparent(value: str | None) -> str | None:
    """``value`` when it is a version-00 W3C traceparent with non-zero ids, else None."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
        return None
    return match[0]


def traceparent_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The valid traceparent among a Kafka record's headers, if any."""
    for key, value in headers or ():
        if key == TRACEPARENT_HEADER and value:
            return valid_traceparent(value.decode("ascii", "replace"))
    return None


def request_id_of(message: object) -> str | None:
    """The request id of an envelope (``request.request_id``) or of a record carrying one."""
    request = getattr(message, "request", None)
    if request is not None:
        return getattr(request, "request_id", None)
    return getattr(message, "request_id", None)


def otlp_traces_url(settings: Settings) -> str:
    """The OTLP/HTTP traces URL, or "" when no endpoint is configured."""
    base = settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if not base:
        return ""
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


class PassedSpan:
    """No span: the trace context passed along unchanged."""

    __slots__ = ("traceparent",)

    def __init__(self, traceparent: str) -> None:
        self.traceparent = traceparent

    def end(self, outputs: Iterable[object] = ()) -> None:
        pass


class Tracing:
    """No tracing: traceparents are passed along (one made for a request that has none)."""

    enabled = False

    def start(self, name: str, traceparent: str | None, message: object) -> PassedSpan:
        return PassedSpan(traceparent or new_traceparent())

    def shutdown(self) -> None:
        pass


class RecordedSpan:
    """An OpenTelemetry span of one request in one stage."""

    __slots__ = ("span", "traceparent", "tracer")

    def __init__(self, span: Any, tracer: Any) -> None:
        self.span, self.tracer = span, tracer
        context = span.get_span_context()
        flags = int(context.trace_flags)  # a client's "not sampled" stays not sampled
        self.traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"

    def end(self, outputs: Iterable[object] = ()) -> None:
        """Ends the span, with what the stage's outputs say about the request."""
        from opentelemetry import trace

        for message in outputs:
            decision = getattr(message, "decision", None)
            if decision is not None and hasattr(decision, "strategy"):
                self.span.set_attributes(
                    {
                        "wrp.decision": decision.decision,
                        "wrp.model": decision.model,
                        "wrp.strategy": decision.strategy,
                    }
                )
            result = getattr(message, "result", None)
            if result is not None:
                self.span.set_attribute("wrp.status", result.status)
            parent = trace.set_span_in_context(self.span)
            for attempt in getattr(message, "attempt_log", None) or ():
                started_ns = int(attempt.started_at * 1e9)
                child = self.tracer.start_span(
                    "dispatch.attempt",
                    context=parent,
                    start_time=started_ns,
                    attributes={
                        "wrp.model": attempt.model,
                        "wrp.pool": attempt.pool,
                        "wrp.endpoint": attempt.endpoint,
                        "wrp.attempt_status": attempt.status,
                        "wrp.error_type": attempt.error_type or "",
                    },
                )
                if attempt.status == "error":
                    child.set_status(trace.StatusCode.ERROR, attempt.error_type or "error")
                child.end(end_time=started_ns + int(attempt.latency_ms * 1e6))
        self.span.end()


class OtlpTracing(Tracing):
    """Spans exported in batches to an OTLP/HTTP endpoint."""

    enabled = True

    def __init__(self, service: str, url: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = TracerProvider(resource=Resource.create({"service.name": f"wrp-{service}"}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self.tracer = self.provider.get_tracer("wrp")
        self.propagator = TraceContextTextMapPropagator()

    def start(self, name: str, traceparent: str | None, message: object) -> RecordedSpan:
        # no incoming context: the span is the root of a new trace (an invented parent would
        # be one no collector ever receives)
        context = (
            self.propagator.extract({TRACEPARENT_HEADER: traceparent}) if traceparent else None
        )
        request = getattr(message, "request", None)
        attributes = {"wrp.stage": name}
        request_id = request_id_of(message)
        if request_id:
            attributes["wrp.request_id"] = request_id
        tenant = getattr(request, "tenant", None) or getattr(message, "tenant", None)
        if tenant:
            attributes["wrp.tenant"] = tenant
        span = self.tracer.start_span(name, context=context, attributes=attributes)
        return RecordedSpan(span, self.tracer)

    def shutdown(self) -> None:
        """Exports what is buffered."""
        self.provider.shutdown()


def tracing_for(settings: Settings, service: str) -> Tracing:
    """OTLP tracing when an endpoint is configured, else pass-through."""
    url = otlp_traces_url(settings)
    return OtlpTracing(service, url) if url else Tracing()
