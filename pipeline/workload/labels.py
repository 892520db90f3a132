"""Label sets of the learned signals; trained heads must use exactly these."""

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
