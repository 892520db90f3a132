"""The scanners: each proposes validated candidates of one or more entities in a text.

Speed: ``find_pii`` runs on every request, so every regex is linear on any input (repetition
is bounded or possessive, candidates start at token boundaries, and failed candidates are
never retried inside the same run of characters), scanners with a rare anchor (``@``, ``:``,
``PRIVATE KEY``, key prefixes) only look near it, and one pass over runs of digits serves
phone numbers, cards, SSNs and IPv4 addresses. Two megabytes of prose with numbers take a few
hundred milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import accumulate

from pipeline.safety.pii.labels import card_label, phone_label, secret_label
from pipeline.safety.pii.validation import (
    IBAN_LENGTHS,
    MAX_PHONE_LENGTH,
    SECRET_MAX_LENGTH,
    card_ok,
    iban_ok,
    ipv4_ok,
    ipv6_ok,
    maestro_12,
    phone_shape,
    random_token,
    ssn_ok,
)

Finding = tuple[str, int, int]  # (entity, start, end) of one validated candidate


def _glued(text: str, end: int) -> bool:
    """Whether a match ending at ``end`` runs straight into a word."""
    return end < len(text) and (text[end].isalnum() or text[end] == "_")


# --- numbers: phone numbers, cards, SSNs and IPv4 addresses from one pass over digit runs.
# A run is a maximal stretch of digits, single separators (space, dot, dash) and bracketed
# groups, optionally led by "+" and followed by an extension. It is possessive, so it never
# backtracks, and it only starts where no run was going on (not after a letter, a separator,
# or a digit and ":" as in "12:30"), so no run is scanned twice.
_NUMBER_RUN = re.compile(
    r"(?P<number>"
    r"(?:\d(?<![\w+.-]\d)(?<!\d:\d)|\+(?<![\w+.-]\+)\(?\d|\((?<![\w+.-]\()\d)"
    r"(?:\d|[ .-](?=[\d(])|\((?=\d)|\)(?=[\d .-]))*+"
    r")"
    r"(?P<ext>[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6}+)?"
)
_PIECES_CARD = re.compile(r"[^.()+]+")  # cards: digits split by spaces or dashes
_PIECES_SSN = re.compile(r"[^ .()+]+")  # SSNs: digits split by dashes
_PIECES_IP = re.compile(r"[^ ()+-]+")  # IPv4: digits split by dots
MAX_CARD_GROUPS = 8


def _numbers(text: str) -> Iterator[Finding]:
    for m in _NUMBER_RUN.finditer(text):
        number = m.group("number")
        if len(number) < 7 or _glued(text, m.end()):
            continue
        start = m.start()
        if not _number_goes_on(text, m.end()):  # "2024-05-01 12:30", "1 234,56"
            for a, b in _phones_in(text, start, m.end(), number, m.group("ext") is not None):
                yield "PHONE_NUMBER", a, b
        if len(number) >= 11 and "-" in number:
            for piece in _PIECES_SSN.finditer(number):
                if len(piece.group()) == 11 and ssn_ok(piece.group()):
                    yield "US_SSN", start + piece.start(), start + piece.end()
        if len(number) >= 12:
            for piece in _PIECES_CARD.finditer(number):
                if len(piece.group()) >= 12:
                    for a, b in _cards_in(text, start + piece.start(), piece.group()):
                        yield "CREDIT_CARD", a, b
        if "." in number:
            for piece in _PIECES_IP.finditer(number):
                if ipv4_ok(piece.group()):
                    yield "IP_ADDRESS", start + piece.start(), start + piece.end()


_INNER_SEPARATOR = re.compile(r"\d[.-]\d")


def _phones_in(
    text: str, start: int, end: int, number: str, has_extension: bool
) -> Iterator[tuple[int, int]]:
    """The run as one phone number or, failing that, its space-separated parts that are.

    A part is a token with its own dots or dashes ("10.0.0.1", "555-123-4567") or a stretch of
    plain digit groups, so "10.0.0.1 555-123-4567" still yields the phone number.
    """
    if _is_phone(text, start, end, number, has_extension):
        yield start, end
        return
    if " " not in number:
        return
    parts: list[tuple[int, int, bool]] = []  # (start, end) in number, has its own separators
    offset = 0
    for token in number.split(" "):
        inner = _INNER_SEPARATOR.search(token) is not None
        if parts and not inner and not parts[-1][2]:
            parts[-1] = (parts[-1][0], offset + len(token), False)
        else:
            parts.append((offset, offset + len(token), inner))
        offset += len(token) + 1
    if len(parts) < 2:
        return
    for i, (a, b, _) in enumerate(parts):
        last = i == len(parts) - 1
        if not 7 <= b - a <= MAX_PHONE_LENGTH:
            continue
        part_end = end if last else start + b
        if _is_phone(text, start + a, part_end, number[a:b], has_extension and last):
            yield start + a, part_end


def _is_phone(text: str, start: int, end: int, number: str, has_extension: bool) -> bool:
    """A strong phone layout, or a weak one with a phone label next to it."""
    shape = phone_shape(number, has_extension)
    return shape == "strong" or (shape == "weak" and phone_label(text, start, end))


_GOES_ON = re.compile(r"[:/]\d|,\d{1,2}(?!\d)")


def _number_goes_on(text: str, end: int) -> bool:
    """Whether the run ending at ``end`` goes on as a time, fraction or decimal (":30", "/25",
    ",5"); a comma before a longer number is a list ("555-123-4567,555-987-6543")."""
    return _GOES_ON.match(text, end) is not None


def _cards_in(text: str, offset: int, piece: str) -> Iterator[tuple[int, int]]:
    """Card numbers made of whole groups of ``piece`` (digits split by spaces or dashes).

    Longest valid card first, left to right, so "4111 1111 1111 1111 12/25" still yields the
    card and a quantity before it ("2 4111 ...") does not spoil it.
    """
    groups = piece.replace("-", " ").split(" ")
    starts = list(accumulate((len(g) + 1 for g in groups[:-1]), initial=0))
    i = 0
    while i < len(groups):
        size = len(groups[i])
        last = _card_from(text, offset, groups, i) if size == 4 or 12 <= size <= 19 else None
        if last is None:
            i += 1
            continue
        yield offset + starts[i], offset + starts[last] + len(groups[last])
        i = last + 1


def _card_from(text: str, offset: int, groups: list[str], i: int) -> int | None:
    """The last group of the longest card number starting at ``groups[i]``, if any."""
    if len(groups[i]) != 4:  # a card written in groups starts with four digits
        digits = groups[i]
        label = maestro_12(digits) and card_label(text, offset)
        return i if 12 <= len(digits) <= 19 and card_ok(digits, [digits], label) else None
    best, digits = None, ""
    for j in range(i, min(len(groups), i + MAX_CARD_GROUPS)):
        if j > i and not 3 <= len(groups[j]) <= 6:
            break
        digits += groups[j]
        if len(digits) > 19:
            break
        label = maestro_12(digits) and card_label(text, offset)
        if len(digits) >= 12 and card_ok(digits, groups[i : j + 1], label):
            best = j
    return best


# --- SSNs without dashes, only right after "SSN" or "social security (number)".
_SSN_BY_LABEL = re.compile(
    r"(?i)\b(?:ssn|social[ -]security(?:[ ]number|[ ]no\.?|[ ]#)?)\W{0,4}(?:is\W{1,3})?"
    r"(\d{3}[ ]?\d{2}[ ]?\d{4})(?![\w-])"
)


def _ssns_by_label(text: str) -> Iterator[Finding]:
    if any(word in text for word in ("ssn", "SSN", "Ssn", "ocial", "OCIAL")):
        for m in _SSN_BY_LABEL.finditer(text):
            if ssn_ok(m.group(1)):
                yield "US_SSN", m.start(1), m.end(1)


# --- email addresses, looked for around each "@".
_EMAIL = re.compile(
    r"(?<![\w.%+-])[^\W_][\w.%+-]{0,63}"  # local part, starting at a token boundary
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[A-Za-z]{2,24}(?![\w-])"
)
_EMAIL_LOCAL = re.compile(r"(?<![\w.%+-])[^\W_][\w.%+-]{0,63}$")  # searched up to an "@"
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[A-Za-z]{2,24}(?![\w-])")


def _emails(text: str) -> Iterator[Finding]:
    ats = text.count("@")
    if ats > len(text) // 256:  # "@" everywhere: one scan beats a search per "@"
        for m in _EMAIL.finditer(text):
            yield "EMAIL_ADDRESS", m.start(), m.end()
        return
    at = text.find("@")
    while at != -1:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local else None
        if local and domain:
            yield "EMAIL_ADDRESS", local.start(), domain.end()
        at = text.find("@", domain.end() if domain else at + 1)


# --- IBANs: country code and check digits, then the rest in one piece or in groups of up to
# four characters split by single spaces ("DE89 3704 0044 0532 0130 00"). The match is cut
# to the country's length, so a word after the IBAN does not spoil it.
_IBAN = re.compile(
    r"[A-Za-z](?<![\w-][A-Za-z])[A-Za-z]\d{2}"
    r"[A-Za-z0-9]{0,30}+(?:[ ][A-Za-z0-9]{1,4}+(?![A-Za-z0-9])){0,8}+"
)


def _ibans(text: str) -> Iterator[Finding]:
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2].upper())
        if length is None or len(m.group()) < length:
            continue
        size, end = 0, m.start()
        for group in m.group().split(" "):
            size += len(group)
            end += len(group) + (end > m.start())
            if size >= length:
                break
        if size != length or _glued(text, end) or text[end : end + 1] == "-":
            continue
        if iban_ok(text[m.start() : end].replace(" ", "")):
            yield "IBAN_CODE", m.start(), end


# --- IPv6, looked for around every pair of colons at most four hex digits apart.
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|:(?=:))(?:[0-9A-Fa-f]{0,4}:){1,7}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})(?![\w:]|\.\w)"
)
IPV6_MAX_LENGTH = 45  # eight groups, or six and an IPv4 tail


def _ipv6s(text: str) -> Iterator[Finding]:
    if text.count(":") > len(text) // 64:  # colons everywhere: one scan beats many windows
        for m in _IPV6.finditer(text):
            if ipv6_ok(m.group()):
                yield "IP_ADDRESS", m.start(), m.end()
        return
    done = 0  # everything before this was searched
    for hint in _IPV6_HINT.finditer(text):
        if hint.start() < done:
            continue
        lo = max(done, hint.start() - IPV6_MAX_LENGTH)
        hi = min(len(text), hint.end() + IPV6_MAX_LENGTH)
        for m in _IPV6.finditer(text, lo, hi):
            if (m.end() < hi or hi == len(text)) and ipv6_ok(m.group()):
                yield "IP_ADDRESS", m.start(), m.end()
        done = hint.end()


# --- secrets.
# Well-known credential formats; each alternative starts with a literal prefix.
_SECRET_PREFIXED = re.compile(
    r"(?<![\w-])(?:"
    r"(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,251}"  # GitHub classic tokens
    r"|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub fine-grained tokens
    r"|xox[bpars]-[A-Za-z0-9-]{10,250}"  # Slack bot/user/app/refresh/... tokens
    r"|sk-ant-[A-Za-z0-9_-]{20,250}"  # Anthropic
    r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,250}"  # OpenAI
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,250}"  # Stripe secret / restricted keys
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_-]{8,4096}+\.[A-Za-z0-9_-]{8,8192}+\.[A-Za-z0-9_-]{0,4096}+"  # JWT
    r")(?![\w-])"
)
# The literal prefixes above: a cheap test that skips the regex on most text.
_SECRET_PREFIXES = (
    "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "sk-", "sk_",
    "rk_", "AIza", "eyJ",
)  # fmt: skip
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
# The base64 body (and "Proc-Type: ..." headers) of a block that has no END line.
_PEM_BODY = re.compile(r"(?:[A-Za-z0-9+/=\s:,.]|-(?!----))*+")
# A long run of token characters (base64, base64url, hex; "=" padding only at the end), a
# secret when it looks random and a secret word comes right before it (:func:`secret_label`).
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_.~-]{20,}+={0,2}")


def _secrets(text: str) -> Iterator[Finding]:
    if any(prefix in text for prefix in _SECRET_PREFIXES):
        for m in _SECRET_PREFIXED.finditer(text):
            # "sk-" also starts ordinary hyphenated words: demand a digit
            if not m.group().startswith("sk-") or any(c.isdigit() for c in m.group()):
                yield "SECRET", m.start(), m.end()
    if "PRIVATE KEY" in text:
        for start, end in _pem_blocks(text):
            yield "SECRET", start, end
    for m in _LONG_TOKEN.finditer(text):
        start, token = m.start(), m.group()
        if len(token) > SECRET_MAX_LENGTH or (start and text[start - 1] not in " \t\n\"':=>"):
            continue
        if secret_label(text, start) and random_token(token):
            yield "SECRET", start, m.end()


def _pem_blocks(text: str) -> Iterator[tuple[int, int]]:
    """``-----BEGIN ... PRIVATE KEY-----`` to its END line, or to the end of a truncated body."""
    end_match: re.Match[str] | None = None
    searched = False  # once _PEM_END finds nothing, there is no END after any later BEGIN
    last_end = -1
    for m in _PEM_BEGIN.finditer(text):
        if m.start() < last_end:
            continue
        if not searched or (end_match is not None and end_match.start() < m.end()):
            end_match, searched = _PEM_END.search(text, m.end()), True
        if end_match is not None:
            last_end = end_match.end()
        else:  # truncated block: the key material is still a secret
            body = _PEM_BODY.match(text, m.end())
            last_end = m.end() + (len(body.group().rstrip()) if body else 0)
        yield m.start(), last_end


SCANNERS: tuple[Callable[[str], Iterator[Finding]], ...] = (
    _secrets,
    _emails,
    _ibans,
    _numbers,
    _ssns_by_label,
    _ipv6s,
)
