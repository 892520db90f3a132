"""The shared vocabularies: names the policy validates against and the domain code produces.

The label sets of the learned signals (trained heads must use exactly these) and the PII
entity names of the detectors (Presidio's). No imports from the rest of the package.
"""

from __future__ import annotations

#: The 14 MMLU-Pro categories; "other" is also the fallback for low-confidence predictions.
DOMAINS: tuple[str, ...] = (
    "biology",
    "business",
    "chemistry",
    "computer science",
    "economics",
    "engineering",
    "health",
    "history",
    "law",
    "math",
    "other",
    "philosophy",
    "physics",
    "psychology",
)
OTHER_DOMAIN = "other"
COMPLEXITY: tuple[str, ...] = ("easy", "medium", "hard")
#: OpenAI moderation categories, in the order of the moderation head's outputs.
MODERATION_CATEGORIES: tuple[str, ...] = (
    "sexual",
    "hate",
    "violence",
    "harassment",
    "self-harm",
    "sexual/minors",
    "hate/threatening",
    "violence/graphic",
)
LOAD_SHAPES: tuple[str, ...] = ("prefill_heavy", "balanced", "decode_heavy")
#: PII and secret entities the detectors find (``pipeline.safety.pii``), named as Presidio does.
KNOWN_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "SECRET",
)
