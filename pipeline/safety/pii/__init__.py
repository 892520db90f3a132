"""Regex PII and secret detection and redaction (entity names follow Presidio's).

Detectors (:mod:`~pipeline.safety.pii.scanners`) are precompiled regexes that propose
candidates, plus small validation functions where the shape alone is ambiguous
(:mod:`~pipeline.safety.pii.validation`: Luhn for cards, ISO 13616 mod-97 for IBANs, octet
ranges for IPv4, ``ipaddress`` for IPv6, layout for phone numbers, Shannon entropy for
unlabelled secrets) and labels nearby (:mod:`~pipeline.safety.pii.labels`: "Phone:", "card
number", "api_key=").

Overlaps are resolved once, over all detectors, by :data:`PRIORITY` (a card number is never
reported as a phone number just because cards were not asked for); only then are the spans
filtered to the requested entities.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from operator import itemgetter

from pipeline.safety.pii.scanners import SCANNERS
from pipeline.vocabulary import KNOWN_ENTITIES

# Highest first: when two candidates overlap, the higher entity wins (then the longer span).
PRIORITY: tuple[str, ...] = (
    "SECRET",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "PHONE_NUMBER",
)
_RANK = {entity: rank for rank, entity in enumerate(PRIORITY)}


@dataclass(frozen=True)
class PiiSpan:
    entity: str
    start: int
    end: int


def find_pii(text: str, entities: list[str] | tuple[str, ...] = KNOWN_ENTITIES) -> list[PiiSpan]:
    """Non-overlapping PII spans in ``text``, sorted by start.

    Every scanner runs; overlapping candidates are resolved by :data:`PRIORITY`, then the
    longer span, then the earlier one, before keeping only the requested ``entities``.
    """
    wanted = set(entities)
    if not wanted or not text:
        return []
    candidates = sorted(
        (_RANK[entity], start - end, start, end, entity)
        for scan in SCANNERS
        for entity, start, end in scan(text)
        if end > start
    )
    taken: list[tuple[int, int, str]] = []  # accepted (start, end, entity), sorted by start
    for _, _, start, end, entity in candidates:
        i = bisect.bisect_left(taken, start, key=itemgetter(0))
        if (i > 0 and taken[i - 1][1] > start) or (i < len(taken) and taken[i][0] < end):
            continue
        taken.insert(i, (start, end, entity))
    return [PiiSpan(entity, start, end) for start, end, entity in taken if entity in wanted]


def redact(text: str, spans: list[PiiSpan]) -> str:
    """``text`` with each span replaced by ``<ENTITY>``."""
    out, last = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[last : span.start])
        out.append(f"<{span.entity}>")
        last = span.end
    out.append(text[last:])
    return "".join(out)
