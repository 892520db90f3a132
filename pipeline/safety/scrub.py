"""No raw PII at rest: text that is stored or logged has every PII value replaced by ``<ENTITY>``.

The safety stage acts on PII by policy (allow, redact, block) for what a pool may see. Whatever
it decided, text that reaches ClickHouse, dead letters and logs goes through here first, so a
blocked request, an error message, a feedback comment or a poison message never keeps the raw
values. Every detector of :mod:`pipeline.safety.pii` runs, whatever the policy allows.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pipeline.envelope import Envelope
from pipeline.safety.pii import find_pii, redact

#: No PII value the detectors find is shorter (an IPv4 address such as 1.2.3.4 is the least).
SHORTEST = 7


def scrub_text(text: str) -> str:
    """``text`` with every PII value replaced by its typed placeholder."""
    if len(text) < SHORTEST:
        return text
    spans = find_pii(text)
    return redact(text, spans) if spans else text


def scrub_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, scalars) with every string scrubbed, the keys
    of its objects too: a client may send any key in an extra field or a content part."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, list):
        return [scrub_value(v) for v in value]
    if isinstance(value, dict):
        return {_scrub_key(k): scrub_value(v) for k, v in value.items()}
    return value


#: Keys up to this long are remembered once scrubbed: the same few ("role", "content", ...)
#: come in every request, and the bound keeps what a hostile client can make us hold small.
REMEMBERED_KEY = 64


@lru_cache(maxsize=4096)
def _scrubbed_key(key: str) -> str:
    return scrub_text(key)


def _scrub_key(key: Any) -> Any:
    """An object's key, scrubbed like any text (a key that is not text stays as it is)."""
    if not isinstance(key, str):
        return key
    return _scrubbed_key(key) if len(key) <= REMEMBERED_KEY else scrub_text(key)


def scrub_bytes(raw: bytes) -> bytes:
    """Raw message bytes with PII in their text scrubbed; bytes that are not UTF-8 stay as they
    are (they round-trip through surrogate escapes)."""
    text = raw.decode("utf-8", "surrogateescape")
    scrubbed = scrub_text(text)
    return raw if scrubbed == text else scrubbed.encode("utf-8", "surrogateescape")


def scrubbed_envelope(envelope: Envelope, exclude: dict[str, Any]) -> dict[str, Any]:
    """The envelope as JSON data (less ``exclude``) with its text scrubbed: the request body
    (every message, tool call and extra field) and the result (answer and error message). Ids,
    signals and scores carry no text."""
    data = envelope.model_dump(mode="json", exclude=exclude)
    request = data["request"]
    if request.get("body") is not None:
        request["body"] = scrub_value(request["body"])
    if data.get("result") is not None:
        data["result"] = scrub_value(data["result"])
    return data
