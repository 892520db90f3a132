"""The policy's own signal rules: keyword rules and embedding-similarity rules."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from pipeline.policy import EmbeddingRule, KeywordRule

WINDOW_CHARS = 16_384


def _compile(rule: KeywordRule, term: str) -> re.Pattern[str]:
    flags = 0 if rule.case_sensitive else re.IGNORECASE
    pattern = term if rule.regex else rf"(?<!\w){re.escape(term)}(?!\w)"
    return re.compile(pattern, flags)


class KeywordMatcher:
    """Names of the rules whose any/all/none terms hold on a text."""

    def __init__(self, rules: list[KeywordRule]) -> None:
        self._rules = [
            (
                rule.name,
                [_compile(rule, t) for t in rule.any],
                [_compile(rule, t) for t in rule.all],
                [_compile(rule, t) for t in rule.none],
            )
            for rule in rules
        ]

    def matches(self, text: str) -> list[str]:
        """Rules that hold on the text's first and last ``WINDOW_CHARS`` characters (bounded
        work on a huge prompt; a term only in its middle is not seen)."""
        if len(text) > 2 * WINDOW_CHARS:
            text = f"{text[:WINDOW_CHARS]}\n{text[-WINDOW_CHARS:]}"
        fired = []
        for name, any_, all_, none in self._rules:
            if any_ and not any(p.search(text) for p in any_):
                continue
            if not all(p.search(text) for p in all_):
                continue
            if any(p.search(text) for p in none):
                continue
            fired.append(name)
        return fired


class EmbeddingMatcher:
    """Best cosine of a request embedding to each rule's candidates, kept when >= threshold."""

    def __init__(
        self, rules: list[EmbeddingRule], embed: Callable[[list[str]], np.ndarray]
    ) -> None:
        self._rules = [(r.name, r.threshold, embed(r.candidates)) for r in rules]

    def matches(self, embedding: np.ndarray) -> dict[str, float]:
        fired = {}
        for name, threshold, candidates in self._rules:
            best = float((candidates @ embedding).max())
            if best >= threshold:
                fired[name] = round(best, 4)
        return fired
