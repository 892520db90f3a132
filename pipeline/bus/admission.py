"""Whether a consumed record may enter a stage (step 2 of the runner), and what becomes of one
that may not: a dead letter on ``wrp.dlq`` (:mod:`pipeline.bus.dead_letters`), and an error
reply when its request id can be read.

A record is refused when it is too large, not JSON, not the topic's schema, or, for a stage on
the request path, when its ``reply_to`` is outside the allow-list (:mod:`pipeline.bus.replies`;
the error reply then goes to ``wrp.responses``), it has no body, it passed more stages than
``WRP_MAX_HOPS``,
it lacks a section the stage needs, or it already carries one the stage (or a later one) adds.
The reply topic is checked first, so every later refusal is answered on an allowed topic.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from pipeline.bus.catalog import DLQ, RESPONSES
from pipeline.bus.codec import decode
from pipeline.bus.dead_letters import dead_lettered, readable_request
from pipeline.bus.health import StageMetrics
from pipeline.bus.replies import ReplyTopics
from pipeline.bus.stage import Inbound, Outbound, Rejected, Rejection, Stage, error_reply
from pipeline.envelope import Contract, DeadLetter, Envelope
from pipeline.settings import Settings
from pipeline.tracing import traceparent_of

log = logging.getLogger(__name__)

#: Producers accept messages up to this many times ``max_request_bytes`` (a dead letter holds a
#: whole oversize message in base64), and so does a consumer of ``wrp.dlq``.
DLQ_SIZE_FACTOR = 4


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _seconds(timestamp_ms: int | None) -> float | None:
    return None if timestamp_ms is None or timestamp_ms < 0 else timestamp_ms / 1000


class Admission:
    """Admits records into ``stage``; everything it refuses is dead-lettered and counted."""

    def __init__(
        self,
        stage: Stage,
        settings: Settings,
        metrics: StageMetrics,
        payloads: dict[str, type[Contract]],
        replies: ReplyTopics,
    ) -> None:
        self.stage, self.settings, self.metrics = stage, settings, metrics
        self.payloads, self.replies = payloads, replies

    async def admit(self, record) -> Inbound | list[Outbound]:
        """The record as the stage's input, or what to produce in its place."""
        raw: bytes = record.value or b""
        # a dead letter carries a whole oversize message, base64: allow what producers may send
        limit = self.settings.max_request_bytes * (DLQ_SIZE_FACTOR if record.topic == DLQ else 1)
        if len(raw) > limit:
            return await self._refuse_unread(
                record,
                "oversize",
                f"message is {len(raw):,} bytes; the limit is {limit:,} (WRP_MAX_REQUEST_BYTES)",
            )
        try:
            message = decode(record.value, self.payloads[record.topic])
        except ValidationError as exc:
            kind = "invalid_json" if exc.errors()[0]["type"] == "json_invalid" else "invalid_schema"
            return await self._refuse_unread(record, kind, describe_validation_error(exc))
        except ValueError as exc:
            return await self._refuse_unread(record, "invalid_message", str(exc))
        inbound = Inbound(
            record.topic,
            record.partition,
            record.offset,
            raw,
            message,
            record.timestamp,
            traceparent_of(getattr(record, "headers", None)),
        )
        if isinstance(message, Envelope) and self.stage.request_path:
            refused = await self._refusal(message, record.timestamp)
            if refused is not None:
                kind, text, reply_topic = refused
                return self.reject(Rejected(inbound, Rejection(kind, text)), reply_topic)
        return inbound

    def reject(self, rejected: Rejected, reply_topic: str | None = None) -> list[Outbound]:
        """The dead letter of a record the stage (or admission) refused, and the error reply."""
        inbound, error = rejected.inbound, rejected.error
        letter = self._letter(inbound, error.error_type, str(error), inbound.message)
        outputs = [Outbound(DLQ, letter.request_id, letter)]
        if isinstance(inbound.message, Envelope) and self.stage.request_path:
            outputs.append(
                error_reply(
                    inbound.message, self.stage.name, error.error_type, str(error), reply_topic
                )
            )
        return outputs

    async def _refusal(
        self, envelope: Envelope, timestamp_ms: int | None
    ) -> tuple[str, str, str | None] | None:
        """(error type, message, topic for the error reply) when the stage must not process
        ``envelope`` (its record stamped ``timestamp_ms``); None when it may."""
        request = envelope.request
        refused = await self.replies.check(request.reply_to, _seconds(timestamp_ms))
        if refused is not None:
            return "invalid_reply_to", refused, RESPONSES
        if request.body is None:
            return (
                "invalid_schema",
                "request.body is required: an OpenAI chat-completions body",
                None,
            )
        if request.hops > self.settings.max_hops:
            return (
                "hop_limit_exceeded",
                f"the request passed {request.hops} stages, more than WRP_MAX_HOPS "
                f"({self.settings.max_hops}): it is looping",
                None,
            )
        if missing := envelope.missing(*self.stage.requires):
            return (
                "missing_section",
                f"stage {self.stage.name} needs section(s) {', '.join(missing)}; "
                "publish requests to wrp.requests, not to an inner topic",
                None,
            )
        present = [name for name in self.stage.refuses if getattr(envelope, name) is not None]
        if present:
            return (
                "unexpected_section",
                f"stage {self.stage.name} got an envelope that already has section(s) "
                f"{', '.join(present)}: publish a new request with only its request section",
                None,
            )
        return None

    async def _refuse_unread(self, record, error_type: str, error: str) -> list[Outbound]:
        """A DLQ record for a record that did not validate and, if its request can be read, an
        error reply; nothing for a record read from ``wrp.dlq`` itself (a loop would grow it
        without end)."""
        if record.topic == DLQ:
            self.metrics.dead_lettered.labels(reason=error_type).inc()
            log.error(
                "stage %s: unreadable dead letter at %s[%d]@%d skipped (%s)",
                self.stage.name,
                record.topic,
                record.partition,
                record.offset,
                error_type,
            )
            return []
        request = readable_request(record.value or b"")
        letter = self._letter(record, error_type, error, request)
        outputs = [Outbound(DLQ, letter.request_id, letter)]
        if request is not None and self.stage.request_path:
            published = _seconds(record.timestamp)
            refused = await self.replies.check(request.reply_to, published)
            topic = None if refused is None else RESPONSES
            outputs.append(
                error_reply(Envelope(request=request), self.stage.name, error_type, error, topic)
            )
        return outputs

    def _letter(self, record, error_type: str, error: str, source: object) -> DeadLetter:
        """The dead letter of ``record`` (logged and counted); ``source`` is what could be read
        of it (an envelope or a request section), for the request id."""
        request = getattr(source, "request", source)
        return dead_lettered(
            self.stage.name,
            record,
            error_type,
            error,
            getattr(request, "request_id", None),
            self.metrics,
        )
