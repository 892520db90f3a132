"""Regex PII detection and redaction (entity names follow Presidio's)."""

from __future__ import annotations

import re
from dataclasses import dataclass


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _ip_ok(text: str) -> bool:
    return all(0 <= int(part) <= 255 for part in text.split("."))


@dataclass(frozen=True)
class PiiPattern:
    entity: str
    regex: re.Pattern[str]
    check: object = None  # optional callable(str) -> bool that confirms a match


PATTERNS: tuple[PiiPattern, ...] = (
    PiiPattern("EMAIL_ADDRESS", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")),
    PiiPattern("US_SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    PiiPattern("CREDIT_CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), _card_ok),
    PiiPattern(
        "IBAN_CODE", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
    ),
    PiiPattern("IP_ADDRESS", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _ip_ok),
    PiiPattern(
        "PHONE_NUMBER",
        # not part of a longer run of digit groups (card numbers, IBANs)
        re.compile(
            r"(?<![\w-])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
            r"\d{3,4}[ .-]\d{3,4}\b(?![ .-]?\d)"
        ),
    ),
)
KNOWN_ENTITIES = tuple(p.entity for p in PATTERNS)


@dataclass(frozen=True)
class PiiSpan:
    entity: str
    start: int
    end: int


def find_pii(text: str, entities: list[str] | tuple[str, ...] = KNOWN_ENTITIES) -> list[PiiSpan]:
    """Non-overlapping PII spans in ``text``, earlier patterns winning overlaps."""
    spans: list[PiiSpan] = []
    for pattern in PATTERNS:
        if pattern.entity not in entities:
            continue
        for match in pattern.regex.finditer(text):
            if pattern.check is not None and not pattern.check(match.group()):  # type: ignore[operator]
                continue
            if any(match.start() < s.end and s.start < match.end() for s in spans):
                continue
            spans.append(PiiSpan(pattern.entity, match.start(), match.end()))
    return sorted(spans, key=lambda s: s.start)


def redact(text: str, spans: list[PiiSpan]) -> str:
    """``text`` with each span replaced by ``<ENTITY>``."""
    out, last = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        out.append(text[last : span.start])
        out.append(f"<{span.entity}>")
        last = span.end
    out.append(text[last:])
    return "".join(out)
