"""The stage API: which topics a stage reads, which envelope sections it needs or refuses, and
how it turns a batch of records into outputs (:meth:`Stage.process`).

Outputs are records to produce (:class:`Outbound`), records the stage rejects (:class:`Rejected`,
dead-lettered by the runner) and work it finishes later for one record (:class:`Pending`: a pool
call). The runner (:mod:`pipeline.bus.runner`) produces the first at once, and awaits each
pending on its own, counting its record done only once what it returns is produced.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

from fastapi import FastAPI
from pydantic import BaseModel

from pipeline.bus.catalog import RESPONSES
from pipeline.bus.clients import FETCH_BUSY_MS
from pipeline.envelope import Contract, Envelope, ErrorInfo, Result
from pipeline.settings import Settings
from pipeline.tracing import PassedSpan, RecordedSpan, Tracing, request_id_of, request_id_var

if TYPE_CHECKING:
    from pipeline.bus.health import StageMetrics


@dataclass(frozen=True)
class Inbound:
    """One consumed record and its validated payload."""

    topic: str
    partition: int
    offset: int
    raw: bytes
    message: Contract
    timestamp: int | None = None  # the record's Kafka timestamp, ms
    traceparent: str | None = None  # the W3C trace context it came with (Kafka header)


@dataclass(frozen=True)
class Outbound:
    """One record to produce."""

    topic: str
    key: str | None
    message: BaseModel
    traceparent: str | None = None  # sent as the record's ``traceparent`` header


class Rejection(Exception):
    """Raised by a stage for one record it cannot process; the record goes to ``wrp.dlq``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class Rejected:
    """A record the stage rejected, returned from :meth:`Stage.process` in its place."""

    inbound: Inbound
    error: Rejection


Output = Outbound | Rejected


@dataclass(frozen=True)
class Pending:
    """Work a stage finishes later for one record. ``outputs`` may be called again when it
    raised (the runner retries it with backoff); the record counts as done, and its offset may
    be committed, only once what it returned is produced."""

    inbound: Inbound
    outputs: Callable[[], Awaitable[list[Output]]]


class Stage(ABC):
    """A stage: which topics it reads, which envelope sections it needs, how it processes."""

    name: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    #: envelope sections that must be present, and sections that must not be (the ones this
    #: stage or a later one adds: an answered envelope never re-enters the request path)
    requires: ClassVar[tuple[str, ...]] = ()
    refuses: ClassVar[tuple[str, ...]] = ()
    #: True for the stages that carry requests toward their answer: they check hops, reply
    #: topics and sections, and answer what they reject. False for a sink of finished envelopes
    #: (analytics): it only records, and never answers (an answer would come back to it).
    request_path: ClassVar[bool] = True
    #: how long a fetch may wait while records flow, and while none come (0:
    #: ``WRP_FETCH_IDLE_MS``), and how many bytes the broker may wait for: a stage nobody waits
    #: on (the analytics sink) fetches seldom and much at a time
    fetch_busy_ms: ClassVar[int] = FETCH_BUSY_MS
    fetch_idle_ms: ClassVar[int] = 0
    fetch_min_bytes: ClassVar[int] = 1
    #: records whose :class:`Pending` work may be in flight at once (0: the stage has none)
    concurrency: ClassVar[int] = 0
    #: Set by the :class:`~pipeline.bus.runner.StageRunner` that runs the stage.
    metrics: StageMetrics

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models, open clients; called once before consuming."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` opened; called once after the last commit."""

    def add_routes(self, app: FastAPI) -> None:  # noqa: B027 - optional hook
        """Extra HTTP routes on the stage's health port (e.g. analytics queries)."""

    def batch_limits(self) -> tuple[int, int]:
        """(records per batch, linger in ms): with a linger > 0 the runner keeps consuming
        until the batch is full or the linger since its first record passed; 0 takes what one
        fetch returns (lowest latency)."""
        return self.settings.batch_max, self.settings.batch_linger_ms

    def accepting(self) -> bool:
        """False pauses consumption until it turns True again (a pool with every endpoint
        full)."""
        return True

    async def process_traced(
        self, batch: list[Inbound], tracing: Tracing
    ) -> list[Output | Pending]:
        """:meth:`process` in a span per request (:func:`traced_process`); a
        sink of finished envelopes only records, in no span."""
        if not self.request_path:
            return await self.process(batch)
        return await traced_process(self, batch, tracing)

    @abstractmethod
    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        """Outputs for a batch of valid records, in input order; raise to retry the batch."""


def error_reply(
    envelope: Envelope,
    stage: str,
    error_type: str,
    message: str,
    topic: str | None = None,
    retry_after_s: float | None = None,
) -> Outbound:
    """The envelope, closed with an error result, addressed to ``topic`` (default: its
    ``reply_to``, which the runner checked when the envelope came in)."""
    error = ErrorInfo(type=error_type, message=message, stage=stage, retry_after_s=retry_after_s)
    closed = envelope.model_copy(
        update={"result": Result(status="error", error=error, stage=stage)}
    )
    return Outbound(topic or envelope.request.reply_to, envelope.key, closed)


def recorded(outputs: list[Outbound]) -> list[Outbound]:
    """``outputs``, and a copy on ``wrp.responses`` of every answer sent to another reply topic:
    that topic is the record of every answer, which the analytics sink stores."""
    copies = [
        Outbound(RESPONSES, out.key, out.message, out.traceparent)
        for out in outputs
        if out.topic != RESPONSES
        and isinstance(out.message, Envelope)
        and out.message.result is not None
    ]
    return [*outputs, *copies] if copies else outputs


async def traced_process(
    stage: Stage, batch: list[Inbound], tracing: Tracing
) -> list[Output | Pending]:
    """``stage.process(batch)`` inside a span per request: each input is handed on with its
    span's traceparent, every output of a request carries it, and the span ends once the
    request's outputs are known (for pending work, once it has returned them)."""
    spans: dict[str | None, PassedSpan | RecordedSpan] = {}
    items = []
    for item in batch:
        request_id = request_id_of(item.message)
        span = spans.get(request_id)
        if span is None:
            span = spans[request_id] = tracing.start(stage.name, item.traceparent, item.message)
        if item.traceparent != span.traceparent:  # (a direct constructor: cheaper than replace)
            item = Inbound(
                item.topic,
                item.partition,
                item.offset,
                item.raw,
                item.message,
                item.timestamp,
                span.traceparent,
            )
        items.append(item)
    outputs = await stage.process(items)
    produced: dict[str | None, list[object]] = {}
    pending: set[str | None] = set()
    traced: list[Output | Pending] = []
    for out in outputs:
        if isinstance(out, Pending):
            request_id = request_id_of(out.inbound.message)
            pending.add(request_id)
            span = spans.get(request_id)
            traced.append(out if span is None else _traced_pending(out, span))
            continue
        if isinstance(out, Outbound):
            request_id = request_id_of(out.message)
            produced.setdefault(request_id, []).append(out.message)
            span = spans.get(request_id)
            if span is not None and out.traceparent is None:
                out = Outbound(out.topic, out.key, out.message, span.traceparent)
        traced.append(out)
    for request_id, span in spans.items():
        if request_id not in pending:
            span.end(produced.get(request_id, ()))
    return traced


def _traced_pending(work: Pending, span: PassedSpan | RecordedSpan) -> Pending:
    """``work`` run with its request id in the logs, its outputs carrying ``span``'s
    traceparent, and ``span`` ended once they are computed."""

    async def outputs() -> list[Output]:
        token = request_id_var.set(request_id_of(work.inbound.message) or "-")
        try:
            computed = await work.outputs()
        finally:
            request_id_var.reset(token)
        span.end([o.message for o in computed if isinstance(o, Outbound)])
        return [
            Outbound(o.topic, o.key, o.message, span.traceparent)
            if isinstance(o, Outbound) and o.traceparent is None
            else o
            for o in computed
        ]

    return replace(work, outputs=outputs)
