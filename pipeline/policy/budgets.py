"""The ``budgets:`` section: spend, token and request limits per tenant, API key or session."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.envelope import TENANT
from pipeline.policy.strict import Strict

BudgetScope = Literal["tenant", "api_key", "session"]
BudgetMetric = Literal["usd", "tokens", "requests"]
BudgetWindow = Literal["minute", "day", "month"]
BudgetAction = Literal["reject", "downgrade", "flag"]


class Budget(Strict):
    """A limit on what one tenant, API key or session is served per calendar window (UTC).

    Usage counts what outcomes say was served (their tokens and USD), folded by the learner into
    ``wrp.usage``; a request routed while its scope is at or over the limit gets ``action``:
    ``reject`` (OpenAI's 429: ``rate_limit_exceeded`` for tokens and requests,
    ``insufficient_quota`` for USD), ``downgrade`` (the cheapest fitting candidate) or ``flag``
    (routed as usual, marked in analytics)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    scope: BudgetScope = Field(description="what the limit is per: tenant, api_key or session")
    metric: BudgetMetric = Field(description="usd (cost at the cards' prices), tokens, requests")
    window: BudgetWindow = Field(description="calendar window, UTC: minute, day or month")
    limit: float = Field(gt=0, description="the most one scope may be served per window")
    action: BudgetAction = "reject"
    tenants: list[Annotated[str, Field(pattern=TENANT)]] = Field(
        [], description="tenants it governs (empty: every tenant)"
    )

    def governs(self, tenant: str) -> bool:
        return not self.tenants or tenant in self.tenants
