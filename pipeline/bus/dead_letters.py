"""Dead letters: what a stage could not process, kept on ``wrp.dlq`` with where it came from and
why, and the request it belonged to when that can still be read (so its client gets an error).

A dead letter names its source record by topic, partition, offset and the record's Kafka
timestamp: offsets alone restart at 0 when the embedded broker restarts. Its ``raw`` bytes and
``error`` are scrubbed of PII (:mod:`pipeline.safety.scrub`): the DLQ keeps messages for two weeks.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pipeline.bus.codec import encode
from pipeline.envelope import DeadLetter, RequestSection
from pipeline.safety.scrub import scrub_bytes, scrub_text

if TYPE_CHECKING:
    from pipeline.bus.health import StageMetrics

log = logging.getLogger(__name__)

#: The fields of a request section worth reading from a broken record, to address an error reply.
_ADDRESS = ("request_id", "tenant", "session_id", "reply_to")
#: ``"field": "value"`` in JSON that does not parse as a whole (a truncated record, say); the
#: quote before the name must not be escaped, so a field named inside a string is not taken.
_FIELD = {
    name: re.compile(rb'(?<!\\)"' + name.encode() + rb'"\s*:\s*"([^"\\]{1,256})"')
    for name in _ADDRESS
}


def readable_request(raw: bytes) -> RequestSection | None:
    """The address of the request in a record that failed validation (its id, tenant, session and
    reply_to), when its id can be read: from the JSON, or from the text of JSON that does not
    parse. Fields that are unreadable or invalid are left at their defaults."""
    fields = _fields_from_json(raw)
    if fields is None:
        fields = {
            name: match.group(1).decode("utf-8", "replace")
            for name, pattern in _FIELD.items()
            if (match := pattern.search(raw))
        }
    if not isinstance(fields.get("request_id"), str):
        return None
    candidate = {k: v for k, v in fields.items() if k in _ADDRESS and isinstance(v, str)}
    for _ in _ADDRESS:
        try:
            return RequestSection.model_validate(candidate)
        except ValidationError as exc:
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            if "request_id" in bad or not bad & candidate.keys():
                return None
            candidate = {k: v for k, v in candidate.items() if k not in bad}
    return None


def _fields_from_json(raw: bytes) -> dict[str, Any] | None:
    """The request section of a record that is JSON, ``{}`` when it is JSON without one, None
    when it is not JSON at all."""
    try:
        data = json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return None
    request = data.get("request") if isinstance(data, dict) else None
    return request if isinstance(request, dict) else {}


def dead_letter(
    stage: str,
    record: Any,
    error_type: str,
    error: str,
    request_id: str | None,
) -> DeadLetter:
    """The dead letter of ``record`` (a consumed record, or an :class:`Inbound` of one), scrubbed
    of PII. A record handed over in memory (fused stages) has no bytes of its own: its message is
    encoded instead."""
    raw = getattr(record, "raw", None)
    if raw is None:
        raw = record.value or b""
    elif not raw:
        raw = encode(record.message)
    return DeadLetter(
        stage=stage,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        record_timestamp=getattr(record, "timestamp", None),
        error_type=error_type,
        error=scrub_text(error),
        request_id=request_id,
        raw=base64.b64encode(scrub_bytes(raw)).decode("ascii"),
    )


def dead_lettered(
    stage: str,
    record: Any,
    error_type: str,
    error: str,
    request_id: str | None,
    metrics: StageMetrics,
) -> DeadLetter:
    """:func:`dead_letter`, counted on ``metrics`` by reason and logged: what the runner and
    the learner do with every record they refuse."""
    letter = dead_letter(stage, record, error_type, error, request_id)
    metrics.dead_lettered.labels(reason=error_type).inc()
    log.warning(
        "stage %s: %s at %s[%d]@%d -> wrp.dlq: %s",
        stage,
        error_type,
        record.topic,
        record.partition,
        record.offset,
        letter.error,
    )
    return letter
