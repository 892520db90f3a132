"""Regex PII and secret detection and redaction (entity names follow Presidio's).

Every detector is a precompiled regex that proposes candidates plus, where the shape alone is
ambiguous, a small validation function (Luhn, ISO 13616 mod-97, IPv4 octets, phone structure,
Shannon entropy). All regexes are linear on adversarial input: repeated groups are bounded or
possessive and every candidate starts at a token boundary, so ``find_pii`` on megabytes of
text stays in the tens of milliseconds.

Overlaps between detectors are resolved once, over all detectors, by :data:`PRIORITY` (a card
number is never reported as a phone number just because cards were not asked for); only then
are the spans filtered to the requested entities.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter

# Highest priority first: when two candidates overlap, the earlier entity wins.
PRIORITY: tuple[str, ...] = (
    "SECRET",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "CREDIT_CARD",
    "US_SSN",
    "IP_ADDRESS",
    "PHONE_NUMBER",
)
KNOWN_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "SECRET",
)


@dataclass(frozen=True)
class PiiSpan:
    entity: str
    start: int
    end: int


Candidate = tuple[int, int]  # (start, end) of one validated match

# --------------------------------------------------------------------------- validation


def _luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum that every payment card number carries in its last digit."""
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(digits: str, groups: list[str], has_context: bool) -> bool:
    """A plausible payment card number.

    13-19 digits (ISO/IEC 7812), a Luhn-valid check digit and a major industry identifier of
    1 (UATP) or 2-6 (banking and financial). Maestro also issues 12-digit numbers (prefixes 50
    and 56-69); those are accepted only after a word like "card", because a tenth of all
    12-digit numbers pass Luhn. When the number is written in groups, the first group has 4
    digits and the others 3-6, as on every card scheme's embossing.
    """
    if len(groups) > 1 and (len(groups[0]) != 4 or any(not 3 <= len(g) <= 6 for g in groups[1:])):
        return False
    if digits[0] not in "123456" or not _luhn_ok(digits):
        return False
    if len(digits) == 12:
        return has_context and (digits[:2] == "50" or "56" <= digits[:2] <= "69")
    return 13 <= len(digits) <= 19


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

    ``compact`` is the IBAN without spaces. The rearranged number moves the country code and
    check digits to the end and spells each letter as two digits (A=10 ... Z=35).
    """
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ipv4_ok(text: str) -> bool:
    """Four dot-separated decimal octets, each 0-255."""
    return all(int(part) <= 255 for part in text.split("."))


def _ipv6_ok(text: str) -> bool:
    """A valid IPv6 address (full, ``::``-compressed or with an IPv4 tail), per ``ipaddress``.

    At least five hex digits, so that C++ scopes like ``a::b`` and the loopback ``::1`` (which
    identifies no one) are not reported.
    """
    if text.count(":") < 2 or sum(c not in ":." for c in text) < 5:  # not "a::b" or "::1"
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def shannon_entropy(token: str) -> float:
    """Bits per character of ``token``'s own character distribution."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())


SECRET_MIN_LENGTH = 20
SECRET_MIN_ENTROPY = 3.5  # random base62 of 20+ chars scores >= 3.6 in 99% of draws
SECRET_MIN_ENTROPY_HEX = 3.0  # hex has only 16 symbols: random 20+ hex chars score >= 2.9


def _random_token(token: str) -> bool:
    """A long token that looks machine-generated rather than a word or an identifier.

    At least :data:`SECRET_MIN_LENGTH` characters, both letters and digits, and a Shannon
    entropy of at least :data:`SECRET_MIN_ENTROPY` bits per character
    (:data:`SECRET_MIN_ENTROPY_HEX` for hex-only tokens, whose alphabet is smaller).
    """
    if len(token) < SECRET_MIN_LENGTH:
        return False
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return False
    hex_only = all(c in "0123456789abcdefABCDEF" for c in token)
    threshold = SECRET_MIN_ENTROPY_HEX if hex_only else SECRET_MIN_ENTROPY
    return shannon_entropy(token) >= threshold


# --------------------------------------------------------------------------- detectors

_EMAIL = re.compile(
    r"(?<![\w.%+-])[^\W_][\w.%+-]{0,63}"  # local part, starting at a token boundary
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[A-Za-z]{2,24}(?![\w-])"
)


def _emails(text: str) -> Iterator[Candidate]:
    for m in _EMAIL.finditer(text):
        yield m.span()


# A maximal run of digit groups split by single spaces or dashes; _cards picks card numbers out
# of it by whole groups, so "4111 1111 1111 1111 12/25" still yields the card.
_DIGIT_RUN = re.compile(r"(?<![\w-])\d++(?:[ -]\d++)*+")
_CARD_CONTEXT = re.compile(
    r"(?i)\b(?:card|cc|credit|debit|maestro|visa|mastercard|amex|pan)\b[^\n]{0,24}$"
)
MAX_CARD_GROUPS = 8


def _glued(text: str, end: int) -> bool:
    """Whether the match ending at ``end`` runs straight into a word."""
    return end < len(text) and (text[end].isalnum() or text[end] == "_")


def _cards(text: str) -> Iterator[Candidate]:
    for m in _DIGIT_RUN.finditer(text):
        run = m.group()
        if len(run) < 12 or _glued(text, m.end()):
            continue
        groups = run.replace("-", " ").split(" ")
        offsets = [0]
        for g in groups[:-1]:
            offsets.append(offsets[-1] + len(g) + 1)
        i = 0
        while i < len(groups):
            end = _card_at(text, m.start(), groups, i)
            if end is None:
                i += 1
                continue
            yield m.start() + offsets[i], m.start() + offsets[end] + len(groups[end])
            i = end + 1


def _card_at(text: str, run_start: int, groups: list[str], i: int) -> int | None:
    """The last group of the longest card number starting at ``groups[i]``, if any."""
    if len(groups[i]) != 4:  # a card written in groups starts with four digits
        ok = 12 <= len(groups[i]) <= 19 and _card_ok(
            groups[i], groups[i : i + 1], len(groups[i]) == 12 and _card_context(text, run_start)
        )
        return i if ok else None
    best, digits = None, ""
    for j in range(i, min(len(groups), i + MAX_CARD_GROUPS)):
        if j > i and not 3 <= len(groups[j]) <= 6:
            break
        digits += groups[j]
        if len(digits) > 19:
            break
        context = len(digits) == 12 and _card_context(text, run_start)
        if len(digits) >= 12 and _card_ok(digits, groups[i : j + 1], context):
            best = j
    return best


def _card_context(text: str, start: int) -> bool:
    return _CARD_CONTEXT.search(text, max(0, start - 40), start) is not None


# Country code and check digits; the rest is read by _ibans (groups of 4 split by a space).
_IBAN_START = re.compile(r"(?<![\w-])([A-Za-z]{2})(\d{2})(?=[ ]?[A-Za-z0-9])")


def _ibans(text: str) -> Iterator[Candidate]:
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        compact, pos = m.group(1) + m.group(2), m.end()
        while len(compact) < length and pos < len(text):
            ch = text[pos]
            if ch == " " and len(compact) % 4 == 0 and pos + 1 < len(text) and text[pos + 1] != " ":
                pos += 1
                continue
            if not ch.isascii() or not ch.isalnum():
                break
            compact += ch
            pos += 1
        followed = pos < len(text) and (text[pos].isalnum() or text[pos] in "_-")
        if len(compact) == length and not followed and _iban_ok(compact):
            yield m.start(), pos


_SSN_AREA = r"(?!000|666|9\d\d)\d{3}"
_SSN_GROUP = r"(?!00)\d{2}"
_SSN_SERIAL = r"(?!0000)\d{4}"
_SSN = re.compile(rf"(?<![\w-]){_SSN_AREA}-{_SSN_GROUP}-{_SSN_SERIAL}(?![\w-])")
# Without dashes only right after the words "SSN" or "social security (number)".
_SSN_CONTEXT = re.compile(
    r"(?i)\b(?:ssn|social[ -]security(?:[ ]number|[ ]no\.?|[ ]#)?)\W{0,4}(?:is\W{1,3})?"
    rf"({_SSN_AREA}[ ]?{_SSN_GROUP}[ ]?{_SSN_SERIAL})(?![\w-])"
)


def _ssns(text: str) -> Iterator[Candidate]:
    for m in _SSN.finditer(text):
        yield m.span()
    for m in _SSN_CONTEXT.finditer(text):
        yield m.span(1)


_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|:(?=:))(?:[0-9A-Fa-f]{0,4}:){1,7}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})(?![\w:]|\.\w)"
)


def _ips(text: str) -> Iterator[Candidate]:
    for m in _IPV4.finditer(text):
        if _ipv4_ok(m.group()):
            yield m.span()
    for m in _IPV6.finditer(text):
        if _ipv6_ok(m.group()):
            yield m.span()


# A maximal run of digits, single separators (space, dot, dash) and bracketed groups, optionally
# led by "+" and followed by an extension. Possessive, so it never backtracks, and the word
# boundary after it is checked in Python so that a failed match is never retried inside the run.
_PHONE = re.compile(
    r"(?<![\w+.-])"
    r"(?P<number>\+?\(?\d(?:\d|[ .-](?=[\d(])|\((?=\d)|\)(?=[\d .-]))*+)"
    r"(?P<ext>[ ]?(?:x|ext\.?|extension)[ ]?\d{1,6}+)?"
)
# Dates (ISO year-month-day, or day and month in either order then the year) with plausible
# month and day numbers, so that "01.84.17.61.18" is not mistaken for one.
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DATE_LIKE = re.compile(
    rf"(?:19|20)\d{{2}}([-./ ]){_MONTH}\1{_DAY}|{_DAY}([-./ ]){_DAY}\2(?:19|20)?\d{{2}}"
)
# A label right before the number: a phone word, possibly followed by a few connecting words
# ("Phone:", "call me at", "my mobile number is", "messages to") ...
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


def _phone_ok(number: str, has_extension: bool, has_context: bool) -> bool:
    """A plausible phone number, given its digit groups and the words around it.

    7-15 digits (E.164 allows at most 15) and not shaped like a date. A label next to the
    number ("Phone:", "call me at", "-Fax") is enough; without one the layout must say
    "phone" on its own: a leading "+", an extension, a bracketed area code followed by two or
    more groups, the North American 3-3-4 layout, a trunk "0" and 9-12 digits in three or
    more groups, or four or more 2-4 digit groups joined by dots or dashes (not shaped like
    a thousands-separated amount). Numbers that start like a date need a label.
    """
    digits = re.sub(r"\D", "", number)
    if not 7 <= len(digits) <= 15 or _DATE_LIKE.fullmatch(number):
        return False
    if has_context:
        return True
    if _DATE_LIKE.match(number):  # "2024-05-01-0042" is an id
        return False
    groups = re.findall(r"\d+", number)
    sizes = [len(g) for g in groups]
    if number.startswith("+") and len(digits) >= 8:
        return True
    if has_extension and len(groups) >= 2:
        return True
    if "(" in number and len(groups) >= 3:
        return True
    if sizes[-3:] == [3, 3, 4] and (len(groups) == 3 or groups[0] in ("1", "001")):
        return len(set(re.findall(r"[ .-]", number))) == 1
    if digits[0] == "0" and len(groups) >= 3 and 9 <= len(digits) <= 12:
        return True
    separators = set(re.findall(r"[ .-]", number))
    thousands = all(s == 3 for s in sizes[1:])  # "12.345.678.901" is an amount
    return (
        len(groups) >= 4
        and all(2 <= s <= 4 for s in sizes)
        and separators <= {".", "-"}
        and not thousands
    )


def _phones(text: str) -> Iterator[Candidate]:
    for m in _PHONE.finditer(text):
        number = m.group("number")
        if len(number) < 7 or _glued(text, m.end()):
            continue
        digits = sum(c.isdigit() for c in number)
        if not 7 <= digits <= 15:
            continue
        has_extension = m.group("ext") is not None
        if _phone_ok(number, has_extension, False) or (
            _phone_ok(number, has_extension, True) and _phone_context(text, m.start(), m.end())
        ):
            yield m.span()


def _phone_context(text: str, start: int, end: int) -> bool:
    """Whether a phone label sits right before ``start`` or right after ``end``."""
    return bool(
        _PHONE_BEFORE.search(text, max(0, start - 40), start)
        or _PHONE_AFTER.match(text, end, end + 16)
    )


# Well-known credential formats. Each alternative starts with a literal prefix and has bounded
# repetition; _random_token below guards the short generic ones against ordinary words.
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
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s:,.-]*+")  # an unterminated block: its base64 body
# The literal prefixes of _SECRET_PREFIXED: a cheap test that skips the regex on most text.
_SECRET_PREFIXES = (
    "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "sk-", "sk_",
    "rk_", "AIza", "eyJ",
)  # fmt: skip
# A long run of token characters (base64, base64url, hex, with "=" padding only at the end) ...
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/_.~-]{20,}+={0,2}")
SECRET_MAX_LENGTH = 512
# ... right after a word like key/token/secret/password. The identifier may go on
# ("AWS_SECRET_ACCESS_KEY", "api_token") and be followed by quotes, ":", "=", "is".
_SECRET_WORDS = ("key", "token", "secret", "passw", "pwd", "bearer", "credential", "auth")
_SECRET_LABEL = re.compile(
    r"(?i)(?<![a-z])(?:key|token|secret|passw(?:or)?d|pwd|bearer|credentials?|auth)"
    r"[\w.-]{0,40}(?:[\s\"']{1,4}|[\s\"']{0,4}(?::=|=>|->|[:=]|\bis\b|\bwas\b)[\s\"']{0,4})$"
)
SECRET_LABEL_WINDOW = 64  # characters before the token searched for a label


def _secrets(text: str) -> Iterator[Candidate]:
    if any(prefix in text for prefix in _SECRET_PREFIXES):
        for m in _SECRET_PREFIXED.finditer(text):
            token = m.group()
            # "sk-" also starts ordinary hyphenated words: demand a digit
            if token.startswith("sk-") and not any(c.isdigit() for c in token):
                continue
            yield m.span()
    if "PRIVATE KEY" in text:
        yield from _pem_blocks(text)
    for m in _LONG_TOKEN.finditer(text):
        start, token = m.start(), m.group()
        if len(token) > SECRET_MAX_LENGTH or (start and text[start - 1] not in " \t\n\"':=>"):
            continue
        window = text[max(0, start - SECRET_LABEL_WINDOW) : start]
        lowered = window.lower()
        if not any(word in lowered for word in _SECRET_WORDS):
            continue
        if _SECRET_LABEL.search(window) and _random_token(token):
            yield m.span()


def _pem_blocks(text: str) -> Iterator[Candidate]:
    """``-----BEGIN ... PRIVATE KEY-----`` to its END line, or to the end of a truncated body."""
    end_match: re.Match[str] | None = None
    searched_from = -1  # _PEM_END was searched from here on; None then means "no END after"
    for m in _PEM_BEGIN.finditer(text):
        if searched_from < 0 or (end_match is not None and end_match.start() < m.end()):
            end_match, searched_from = _PEM_END.search(text, m.end()), m.end()
        if end_match is not None:
            yield m.start(), end_match.end()
        else:  # truncated block: the key material is still a secret
            body = _PEM_BODY.match(text, m.end())
            yield m.start(), m.end() + (len(body.group().rstrip()) if body else 0)


DETECTORS: dict[str, Callable[[str], Iterator[Candidate]]] = {
    "SECRET": _secrets,
    "EMAIL_ADDRESS": _emails,
    "IBAN_CODE": _ibans,
    "CREDIT_CARD": _cards,
    "US_SSN": _ssns,
    "IP_ADDRESS": _ips,
    "PHONE_NUMBER": _phones,
}

# --------------------------------------------------------------------------- API


def find_pii(text: str, entities: list[str] | tuple[str, ...] = KNOWN_ENTITIES) -> list[PiiSpan]:
    """Non-overlapping PII spans in ``text``, sorted by start.

    Every detector runs; overlapping candidates are resolved by :data:`PRIORITY` (then the
    longer span, then the earlier one) before keeping only the requested ``entities``.
    """
    wanted = set(entities)
    if not wanted or not text:
        return []
    candidates = [
        (rank, start - end, start, end, entity)
        for rank, entity in enumerate(PRIORITY)
        for start, end in DETECTORS[entity](text)
        if end > start
    ]
    candidates.sort()
    taken: list[tuple[int, int, str]] = []  # accepted (start, end, entity), sorted by start
    for _, _, start, end, entity in candidates:
        i = bisect.bisect_left(taken, start, key=itemgetter(0))
        if i > 0 and taken[i - 1][1] > start:
            continue
        if i < len(taken) and taken[i][0] < end:
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
