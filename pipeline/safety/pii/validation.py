"""Checks for candidates whose shape alone is ambiguous.

Luhn for cards, ISO 13616 mod-97 for IBANs, the SSA's number ranges for SSNs, octet ranges for
IPv4, ``ipaddress`` for IPv6, the layout of phone numbers, and Shannon entropy for unlabelled
secrets.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter

_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # digit * 2, minus 9 when that exceeds 9


def _luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum that every payment card number carries in its last digit.

    From the right, every second digit is doubled (less 9 when over 9); the sum ends in 0.
    """
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def card_ok(digits: str, groups: list[str], has_context: bool) -> bool:
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
        return maestro_12(digits) and has_context and _luhn_ok(digits)
    return 13 <= len(digits) <= 19 and digits[0] in "123456" and _luhn_ok(digits)


def maestro_12(digits: str) -> bool:
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


def iban_ok(compact: str) -> bool:
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


def ssn_ok(text: str) -> bool:
    """A US SSN as the SSA issues them: area not 000, 666 or 9xx, group not 00, serial not 0000,
    written ``123-45-6789`` (or ``123 45 6789`` / ``123456789``; the labelled scanner only)."""
    return _SSN_SHAPE.fullmatch(text) is not None


def ipv4_ok(text: str) -> bool:
    """Four dot-separated decimal octets, each 0-255."""
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def ipv6_ok(text: str) -> bool:
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


def phone_shape(number: str, has_extension: bool) -> str | None:
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


def random_token(token: str) -> bool:
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
