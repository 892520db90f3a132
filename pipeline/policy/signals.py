"""The ``signals:`` section: context classes, load shape, keyword and embedding rules."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from pipeline.policy.strict import Strict


class ContextClass(Strict):
    name: str
    max_tokens: int = Field(gt=0)


#: ``.*`` / ``.+`` not preceded by a backslash: a wildcard run without a bound.
UNBOUNDED_WILDCARD = re.compile(r"(?<!\\)\.[*+]")


class KeywordRule(Strict):
    """Fires when the routing text contains any of ``any`` (if given), every one of ``all``
    and none of ``none``. Terms are whole words unless ``regex`` is true."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    any: list[str] = []
    all: list[str] = []
    none: list[str] = []
    regex: bool = False
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _valid(self) -> KeywordRule:
        if not self.any and not self.all:
            raise ValueError(f"keyword rule {self.name!r} needs terms under any: or all:")
        if self.regex:
            for term in [*self.any, *self.all, *self.none]:
                try:
                    re.compile(term)
                except re.error as exc:
                    raise ValueError(
                        f"keyword rule {self.name!r}: invalid regex {term!r} ({exc})"
                    ) from None
                if UNBOUNDED_WILDCARD.search(term):
                    raise ValueError(
                        f"keyword rule {self.name!r}: {term!r} has an unbounded .* or .+, which "
                        "can take quadratic time on long prompts; bound it, e.g. [^\\n]{0,200}?"
                    )
        return self


class EmbeddingRule(Strict):
    """Fires when the request embedding's cosine to any candidate is >= ``threshold``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    candidates: list[str] = Field(min_length=1)
    threshold: float = Field(0.6, ge=-1, le=1)


class LoadShapeConfig(Strict):
    """prefill_heavy when prompt/expected-output tokens >= ``prefill_ratio``, decode_heavy when
    <= ``decode_ratio``. Expected output: min(max_tokens, the domain's prior)."""

    prefill_ratio: float = Field(4.0, gt=0)
    decode_ratio: float = Field(0.5, gt=0)
    default_output_tokens: int = Field(
        256, gt=0, description="prior when the domain head carries none"
    )


class SignalsConfig(Strict):
    context_classes: list[ContextClass] = Field(min_length=1)
    domain_threshold: float = Field(
        0.3, ge=0, le=1, description="below this head confidence the domain is 'other'"
    )
    language_min_confidence: float = Field(0.5, ge=0, le=1)
    session_ttl_s: float = Field(900, gt=0, description="a session seen within this is warm")
    load_shape: LoadShapeConfig = LoadShapeConfig()
    keywords: list[KeywordRule] = []
    embeddings: list[EmbeddingRule] = []

    @model_validator(mode="after")
    def _ordered(self) -> SignalsConfig:
        bounds = [c.max_tokens for c in self.context_classes]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(
                "context_classes must be listed in strictly increasing max_tokens order"
            )
        if self.load_shape.decode_ratio >= self.load_shape.prefill_ratio:
            raise ValueError("load_shape.decode_ratio must be below load_shape.prefill_ratio")
        for family, rules in (("keywords", self.keywords), ("embeddings", self.embeddings)):
            names = [r.name for r in rules]
            if len(set(names)) != len(names):
                raise ValueError(f"{family}: rule names must be unique")
        return self
