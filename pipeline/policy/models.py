"""The ``models:`` section: model cards (pool, context length, price, quality priors)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from pipeline.policy.strict import Strict
from pipeline.vocabulary import DOMAINS


class Price(Strict):
    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens")

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


def _quality_keys(value: dict[str, float]) -> dict[str, float]:
    known = (*DOMAINS, "default")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; use 'default' or one of {list(known)}")
    return value


class ModelCard(Strict):
    name: str = Field(min_length=1)
    pool: str
    context_length: int = Field(gt=0)
    price: Price
    description: str = ""
    quality: Annotated[
        dict[str, Annotated[float, Field(ge=0, le=1)]], AfterValidator(_quality_keys)
    ] = Field(
        {},
        description="prior probability of a good answer per domain; 'default' for the rest",
    )
    reasoning: bool = Field(False, description="the model has a reasoning (thinking) mode")

    def prior_quality(self, domain: str | None) -> float:
        """The card's quality prior for ``domain`` (0.5 when the card says nothing)."""
        return self.quality.get(domain or "default", self.quality.get("default", 0.5))
