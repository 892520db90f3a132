"""Regex PII and secret detection and redaction (entity names follow Presidio's).

Detectors are precompiled regexes that propose candidates, plus small validation functions
where the shape alone is ambiguous: Luhn for cards, ISO 13616 mod-97 for IBANs, octet ranges
for IPv4, ``ipaddress`` for IPv6, layout and nearby labels for phone numbers, Shannon entropy
for unlabelled secrets.

Speed: ``find_pii`` runs on every request, so every regex is linear on any input (repetition
is bounded or possessive, candidates start at token boundaries, and failed candidates are
never retried inside the same run of characters), scanners with a rare anchor (``@``, ``:``,
``PRIVATE KEY``, key prefixes) only look near it, and one pass over runs of digits serves
phone numbers, cards, SSNs and IPv4 addresses. Two megabytes of prose with numbers take a few
hundred milliseconds.

Overlaps are resolved once, over all detectors, by :data:`PRIORITY` (a card number is never
reported as a phone number just because cards were not asked for); only then are the spans
filtered to the requested entities.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter

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


Finding = tuple[str, int, int]  # (entity, start, end) of one validated candidate


def _glued(text: str, end: int) -> bool:
    """Whether a match ending at ``end`` runs straight into a word."""
    return end < len(text) and (text[end].isalnum() or text[end] == "_")


# =========================================================================== validation


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # digit * 2, minus 9 when that exceeds 9


def _luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum that every payment card number carries in its last digit.

    From the right, every second digit is doubled (less 9 when over 9); the sum ends in 0.
    """
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def _card_ok(digits: str, groups: list[str], has_context: bool) -> bool:
    """A plausible payment card number.

    13-19 digits (ISO/IEC 7812), a Luhn-valid check digit and a major industry identifier of
    1 (UATP) or 2-6 (banking and financial). Maestro also issues 12-digit numbers (prefixes 50
    and 56-69); those count only after a word like "card" (``has_context``), because a tenth
    of all 12-digit numbers pass Luhn. Written in groups, the first group has 4 digits and the
    others 3-6, as every scheme prints them (4-4-4-4, 4-6-5, 4-6-4, ...).
    """
    if len(groups) > 1 and (len(groups[0]) != 4 or any(not 3 <= len(g) <= 6 for g in groups[1:])):
        return False
    if len(digits) == 12:
        return _maestro_12(digits) and has_context and _luhn_ok(digits)
    return 13 <= len(digits) <= 19 and digits[0] in "123456" and _luhn_ok(digits)


def _maestro_12(digits: str) -> bool:
    """Whether a 12-digit number could be a Maestro card, before looking for a label."""
    return len(digits) == 12 and (digits[:2] == "50" or "56" <= digits[:2] <= "69")


# ISO 13616 IBAN lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban_ok(compact: str) -> bool:
    """ISO 13616: the country's registered length and ``int(rearranged) % 97 == 1``.

    ``compact`` is the IBAN without spaces, in either case. The rearranged number moves the
    country code and check digits to the end and spells each letter as two digits (A=10 ...
    Z=35).
    """
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


_SSN_SHAPE = re.compile(r"(?!000|666|9\d\d)\d{3}([- ]?)(?!00)\d{2}\1(?!0000)\d{4}")


def _ssn_ok(text: str) -> bool:
    """A US SSN as the SSA issues them: area not 000, 666 or 9xx, group not 00, serial not 0000,
    written ``123-45-6789`` (or ``123 45 6789`` / ``123456789``; :func:`_ssns_by_label` only)."""
    return _SSN_SHAPE.fullmatch(text) is not None


def _ipv4_ok(text: str) -> bool:
    """Four dot-separated decimal octets, each 0-255."""
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def _ipv6_ok(text: str) -> bool:
    """A valid IPv6 address (full, ``::``-compressed or with an IPv4 tail), per ``ipaddress``.

    At least five hex digits, so that C++ scopes like ``a::b`` and the loopback ``::1`` (which
    identifies no one) are not reported.
    """
    if text.count(":") < 2 or sum(c not in ":." for c in text) < 5:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# Dates (ISO year-month-day, or day and month in either order then the year) with plausible
# month and day numbers, so that "01.84.17.61.18" is not mistaken for one.
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DATE_LIKE = re.compile(
    rf"(?:19|20)\d{{2}}([-./ ]){_MONTH}\1{_DAY}|{_DAY}([-./ ]){_DAY}\2(?:19|20)?\d{{2}}"
)
_DIGIT_GROUP = re.compile(r"\d+")
_SEPARATOR = re.compile(r"[ .-]")
MAX_PHONE_LENGTH = 32  # 15 digits with a separator between each and a bracketed trunk


def _phone_shape(number: str, has_extension: bool) -> str | None:
    """``"strong"`` if the layout alone says phone, ``"weak"`` if it needs a label, else None.

    Any phone number has 7-15 digits (E.164 allows at most 15) and is not shaped like a date.
    Strong layouts: a leading "+", an extension, a bracketed area code followed by two or more
    groups, the North American 3-3-4 layout, a trunk "0" and 9-12 digits in three or more
    groups, or four or more 2-4 digit groups joined by dots or by dashes (and not shaped like
    a thousands-separated amount); the last three use one kind of separator throughout.
    Numbers that start like a date ("2024-05-01-0042") are weak.
    """
    if number.isdigit():  # the common case, one group: never strong
        return "weak" if 7 <= len(number) <= 15 else None
    if len(number) > MAX_PHONE_LENGTH:
        return None
    groups = _DIGIT_GROUP.findall(number)
    digits = "".join(groups)
    if not 7 <= len(digits) <= 15 or _DATE_LIKE.fullmatch(number):
        return None
    if _DATE_LIKE.match(number):
        return "weak"
    sizes = [len(g) for g in groups]
    separators = set(_SEPARATOR.findall(number))
    strong = (
        (number.startswith("+") and len(digits) >= 8)
        or (has_extension and len(groups) >= 2)
        or ("(" in number and len(groups) >= 3)
        or (
            sizes[-3:] == [3, 3, 4]
            and (len(groups) == 3 or groups[0] in ("1", "001"))
            and len(separators) == 1
        )
        or (
            digits[0] == "0"
            and sizes[0] >= 2
            and len(groups) >= 3
            and 9 <= len(digits) <= 12
            and len(separators) == 1
        )
        or (
            len(groups) >= 4
            and all(2 <= s <= 4 for s in sizes)
            and separators in ({"."}, {"-"})
            and not all(s == 3 for s in sizes[1:])  # "12.345.678.901" is an amount
        )
    )
    return "strong" if strong else "weak"


def shannon_entropy(token: str) -> float:
    """Bits per character of ``token``'s own character distribution."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


SECRET_MIN_LENGTH = 20
SECRET_MAX_LENGTH = 512
SECRET_MIN_ENTROPY = 3.5  # random base62 of 20+ characters scores >= 3.6 in 99% of draws
SECRET_MIN_ENTROPY_HEX = 3.0  # hex has 16 symbols: random 20+ hex characters score >= 2.9
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _random_token(token: str) -> bool:
    """A long token that looks machine-generated rather than a word or an identifier.

    :data:`SECRET_MIN_LENGTH` to :data:`SECRET_MAX_LENGTH` characters, both letters and digits,
    and a Shannon entropy of at least :data:`SECRET_MIN_ENTROPY` bits per character
    (:data:`SECRET_MIN_ENTROPY_HEX` for hex-only tokens, whose alphabet is smaller).
    """
    if not SECRET_MIN_LENGTH <= len(token) <= SECRET_MAX_LENGTH:
        return False
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return False
    hex_only = _HEX_DIGITS.issuperset(token)
    threshold = SECRET_MIN_ENTROPY_HEX if hex_only else SECRET_MIN_ENTROPY
    return shannon_entropy(token) >= threshold


# =========================================================================== labels nearby

# A phone label right before the number: a phone word, possibly followed by a few connecting
# words ("Phone:", "call me at", "my mobile number is", "messages to") ...
_PHONE_BEFORE = re.compile(
    r"(?i)(?:\b(?:phone|ph|tel|telephone|mobile|mob|cell|cellphone|fax|call|called|calling|"
    r"ring|text|texts|sms|messages?|whatsapp|contact|reach|dial|landline|hotline|helpline|"
    r"registered)\b(?:\W{1,3}(?:me|us|him|her|them|at|on|to|is|was|number|no|nr|num|my|our|"
    r"his|their|the|a|an|via))*\W{0,4}"
    # ... or a place word used as a label ("Office: ", "Desk - "), not in prose ("office is at")
    r"|\b(?:office|home|work|desk|direct)(?:[ ](?:phone|number|no\.?|line))?[ ]?[:#-]\s{0,3})$"
)
# ... or right after it ("-Office", " (mobile)").
_PHONE_AFTER = re.compile(r"(?i)\W{0,3}(?:office|fax|mobile|home|work|cell|tel|phone|landline)\b")
# Substrings of every label above: a cheap test before the regexes.
_PHONE_STEMS = (
    "ph", "tel", "mob", "cell", "fax", "call", "ring", "text", "sms", "messag", "whatsapp",
    "contact", "reach", "dial", "line", "registered", "office", "home", "work", "desk", "direct",
)  # fmt: skip
LABEL_WINDOW = 40  # characters before a candidate searched for a label


def _phone_label(text: str, start: int, end: int) -> bool:
    """Whether a phone label sits right before ``start`` or right after ``end``."""
    lo = max(0, start - LABEL_WINDOW)
    around = text[lo : end + 16].lower()
    if not any(stem in around for stem in _PHONE_STEMS):
        return False
    return bool(_PHONE_BEFORE.search(text, lo, start) or _PHONE_AFTER.match(text, end, end + 16))


_CARD_LABEL = re.compile(
    r"(?i)\b(?:card|cc|credit|debit|maestro|visa|mastercard|amex|pan)\b[^\n]{0,24}$"
)


def _card_label(text: str, start: int) -> bool:
    """Whether a card word ("card number", "cc", "Maestro") comes shortly before ``start``."""
    return _CARD_LABEL.search(text, max(0, start - LABEL_WINDOW), start) is not None


# =========================================================================== scanners

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
                if len(piece.group()) == 11 and _ssn_ok(piece.group()):
                    yield "US_SSN", start + piece.start(), start + piece.end()
        if len(number) >= 12:
            for piece in _PIECES_CARD.finditer(number):
                if len(piece.group()) >= 12:
                    for a, b in _cards_in(text, start + piece.start(), piece.group()):
                        yield "CREDIT_CARD", a, b
        if "." in number:
            for piece in _PIECES_IP.finditer(number):
                if _ipv4_ok(piece.group()):
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
    shape = _phone_shape(number, has_extension)
    return shape == "strong" or (shape == "weak" and _phone_label(text, start, end))


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
        label = _maestro_12(digits) and _card_label(text, offset)
        return i if 12 <= len(digits) <= 19 and _card_ok(digits, [digits], label) else None
    best, digits = None, ""
    for j in range(i, min(len(groups), i + MAX_CARD_GROUPS)):
        if j > i and not 3 <= len(groups[j]) <= 6:
            break
        digits += groups[j]
        if len(digits) > 19:
            break
        label = _maestro_12(digits) and _card_label(text, offset)
        if len(digits) >= 12 and _card_ok(digits, groups[i : j + 1], label):
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
            if _ssn_ok(m.group(1)):
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
        if _iban_ok(text[m.start() : end].replace(" ", "")):
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
            if _ipv6_ok(m.group()):
                yield "IP_ADDRESS", m.start(), m.end()
        return
    done = 0  # everything before this was searched
    for hint in _IPV6_HINT.finditer(text):
        if hint.start() < done:
            continue
        lo = max(done, hint.start() - IPV6_MAX_LENGTH)
        hi = min(len(text), hint.end() + IPV6_MAX_LENGTH)
        for m in _IPV6.finditer(text, lo, hi):
            if (m.end() < hi or hi == len(text)) and _ipv6_ok(m.group()):
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
# A long run of token characters (base64, base64url, hex; "=" padding only at the end) ...
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_.~-]{20,}+={0,2}")
# ... right after a word like key/token/secret/password. The identifier may go on
# ("AWS_SECRET_ACCESS_KEY", "api_token") and be followed by quotes, ":", "=", "is".
_SECRET_LABEL = re.compile(
    r"(?i)(?<![a-z])(?:key|token|secret|passw(?:or)?d|pwd|bearer|credentials?|auth)"
    r"[\w.-]{0,40}(?:[\s\"']{1,4}|[\s\"']{0,4}(?::=|=>|->|[:=]|\bis\b|\bwas\b)[\s\"']{0,4})$"
)
_SECRET_WORDS = ("key", "token", "secret", "passw", "pwd", "bearer", "credential", "auth")
SECRET_LABEL_WINDOW = 64  # characters before a token searched for a label


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
        window = text[max(0, start - SECRET_LABEL_WINDOW) : start]
        lowered = window.lower()
        if not any(word in lowered for word in _SECRET_WORDS):
            continue
        if _SECRET_LABEL.search(window) and _random_token(token):
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

# =========================================================================== API


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
