"""Labels next to a candidate that tell what it is: phone words, card words, secret words."""

from __future__ import annotations

import re

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


def phone_label(text: str, start: int, end: int) -> bool:
    """Whether a phone label sits right before ``start`` or right after ``end``."""
    lo = max(0, start - LABEL_WINDOW)
    around = text[lo : end + 16].lower()
    if not any(stem in around for stem in _PHONE_STEMS):
        return False
    return bool(_PHONE_BEFORE.search(text, lo, start) or _PHONE_AFTER.match(text, end, end + 16))


_CARD_LABEL = re.compile(
    r"(?i)\b(?:card|cc|credit|debit|maestro|visa|mastercard|amex|pan)\b[^\n]{0,24}$"
)


def card_label(text: str, start: int) -> bool:
    """Whether a card word ("card number", "cc", "Maestro") comes shortly before ``start``."""
    return _CARD_LABEL.search(text, max(0, start - LABEL_WINDOW), start) is not None


# A word like key/token/secret/password right before a token. The identifier may go on
# ("AWS_SECRET_ACCESS_KEY", "api_token") and be followed by quotes, ":", "=", "is".
_SECRET_LABEL = re.compile(
    r"(?i)(?<![a-z])(?:key|token|secret|passw(?:or)?d|pwd|bearer|credentials?|auth)"
    r"[\w.-]{0,40}(?:[\s\"']{1,4}|[\s\"']{0,4}(?::=|=>|->|[:=]|\bis\b|\bwas\b)[\s\"']{0,4})$"
)
_SECRET_WORDS = ("key", "token", "secret", "passw", "pwd", "bearer", "credential", "auth")
SECRET_LABEL_WINDOW = 64  # characters before a token searched for a label


def secret_label(text: str, start: int) -> bool:
    """Whether a secret word ("api_key=", "password is") comes right before ``start``."""
    window = text[max(0, start - SECRET_LABEL_WINDOW) : start]
    lowered = window.lower()
    if not any(word in lowered for word in _SECRET_WORDS):
        return False
    return _SECRET_LABEL.search(window) is not None
