"""Budgets at routing time: which of the policy's limits a request's tenant, API key or session
has reached in the current window, and what the strictest of them does to it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.envelope import RequestSection, Usage
from pipeline.learn.usage import scope_owner, used, window_end, window_start
from pipeline.policy import Budget

#: Actions from the strictest.
SEVERITY = {"reject": 0, "downgrade": 1, "flag": 2}


@dataclass(frozen=True)
class OverBudget:
    """A budget ``request`` has reached: ``used`` of ``budget.limit`` in a window that ends in
    ``retry_after_s``."""

    budget: Budget
    used: float
    retry_after_s: float

    @property
    def error_type(self) -> str:
        """OpenAI's code: spend is quota, tokens and requests are rate limits."""
        return "insufficient_quota" if self.budget.metric == "usd" else "rate_limit_exceeded"

    @property
    def message(self) -> str:
        b = self.budget
        amount = (
            f"${self.used:.4f} of ${b.limit:g}"
            if b.metric == "usd"
            else (f"{self.used:g} of {b.limit:g} {b.metric}")
        )
        return (
            f"budget {b.name!r} reached: this {b.scope.replace('_', ' ')} was served {amount} "
            f"this {b.window} (UTC); retry after {self.retry_after_s:.0f}s or ask your operator "
            "to raise the limit"
        )


def over_budget(
    budgets: Iterable[Budget],
    request: RequestSection,
    records: Mapping[str, Usage],
    partitions: Iterable[int],
    at: float,
) -> list[OverBudget]:
    """Every budget governing ``request`` whose scope is at or over its limit, strictest first."""
    partitions = tuple(partitions)
    reached = []
    for budget in budgets:
        if not budget.governs(request.tenant):
            continue
        owner = scope_owner(budget.scope, request.tenant, request.session_id, request.api_key)
        if owner is None:
            continue
        amount = used(budget, owner, records, partitions, at)
        if amount >= budget.limit:
            end = window_end(budget.window, window_start(budget.window, at))
            reached.append(OverBudget(budget, amount, max(end - at, 0.0)))
    return sorted(reached, key=lambda over: SEVERITY[over.budget.action])
