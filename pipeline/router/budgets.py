"""Budgets at routing time: which of the policy's limits a request's tenant, API key or session
has reached in the current window, and what the strictest of them does to it.

Usage is what the learner counted from outcomes, plus what this router instance routed that the
count does not hold yet (:class:`Reservations`, at the decision's estimate): an agent firing its
next request the moment an answer lands is stopped as soon as the answer would reach the limit,
not once the count has gone round the learner. A reservation is settled when its request id
shows up in the usage records (:attr:`~pipeline.envelope.Usage.recent`), or after
:data:`HOLD_S`. A session's requests all reach one router instance, so its reservations are all
in one place; a tenant's spread over instances, which see each other's answers once counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pipeline.envelope import RequestSection, Usage, usage_key
from pipeline.learn.usage import RECENT, RESTORED, scope_owner, used, window_end, window_start
from pipeline.policy import Budget

#: Actions from the strictest.
SEVERITY = {"reject": 0, "downgrade": 1, "flag": 2}
#: Seconds a reservation counts at most: by then its outcome is counted, or lost.
HOLD_S = 30.0
#: Reservations kept per scope at most (the oldest go first).
MAX_HELD = 10_000


@dataclass(frozen=True)
class Reservation:
    """A routed request's estimated tokens and USD, held until its outcome is counted;
    ``counted`` is how many requests its scope had counted when it was made."""

    request_id: str
    tokens: int
    usd: float
    at: float
    counted: int = 0


class Reservations:
    """What this instance routed per (scope, who, window), not yet in the counted usage.

    A reservation is settled when its id shows up among a usage record's recent ids, or once
    :data:`~pipeline.learn.usage.RECENT` more requests of its scope were counted (its id may
    have scrolled out of the record: counting it short a moment beats counting it twice), or
    after :data:`HOLD_S`."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, str], OrderedDict[str, Reservation]] = {}
        self._sweep_at = 0.0

    def reserve(
        self,
        budgets: Iterable[Budget],
        request: RequestSection,
        held: Reservation,
        records: Mapping[str, Usage],
        partitions: Iterable[int],
    ) -> None:
        partitions = tuple(partitions)
        for scope, owner, window in _scopes(budgets, request):
            counted = _counted(scope, owner, window, records, partitions, held.at)[0]
            entries = self._held.setdefault((scope, owner, window), OrderedDict())
            entries[held.request_id] = replace(held, counted=counted)
            while len(entries) > MAX_HELD:
                entries.popitem(last=False)
        if held.at >= self._sweep_at:  # scopes nobody asks about again (a finished session)
            self._sweep(held.at)

    def pending(
        self,
        budget: Budget,
        owner: str,
        records: Mapping[str, Usage],
        partitions: Iterable[int],
        at: float,
    ) -> float:
        """``budget``'s metric over the reservations of ``owner`` the count does not hold; the
        settled and stale ones are dropped."""
        entries = self._held.get((budget.scope, owner, budget.window))
        if not entries:
            return 0.0
        start = window_start(budget.window, at)
        counted, recent = _counted(budget.scope, owner, budget.window, records, partitions, at)
        for request_id, held in list(entries.items()):
            if (
                request_id in recent
                or counted - held.counted >= RECENT
                or held.at < max(at - HOLD_S, start)
            ):
                del entries[request_id]
        if not entries:
            del self._held[(budget.scope, owner, budget.window)]
            return 0.0
        if budget.metric == "requests":
            return float(len(entries))
        return float(sum(getattr(held, budget.metric) for held in entries.values()))

    def _sweep(self, at: float) -> None:
        for key, entries in list(self._held.items()):
            for request_id, held in list(entries.items()):
                if held.at < at - HOLD_S:
                    del entries[request_id]
            if not entries:
                del self._held[key]
        self._sweep_at = at + HOLD_S


def _counted(
    scope: str,
    owner: str,
    window: str,
    records: Mapping[str, Usage],
    partitions: Iterable[int],
    at: float,
) -> tuple[int, set[str]]:
    """Requests counted for a scope in the window holding ``at``, and the recent ids."""
    start = window_start(window, at)  # type: ignore[arg-type]
    requests, recent = 0, set()
    for partition in (*partitions, RESTORED):
        record = records.get(usage_key(scope, owner, window, partition))
        if record is not None and record.start == start:
            requests += record.requests
            recent.update(record.recent)
    return requests, recent


def _scopes(budgets: Iterable[Budget], request: RequestSection) -> set[tuple[str, str, str]]:
    found = set()
    for budget in budgets:
        owner = scope_owner(budget.scope, request.tenant, request.session_id, request.api_key)
        if budget.governs(request.tenant) and owner is not None:
            found.add((budget.scope, owner, budget.window))
    return found


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
    reservations: Reservations | None = None,
) -> list[OverBudget]:
    """Every budget governing ``request`` whose scope is at or over its limit (what was counted
    plus this instance's ``reservations``), strictest first."""
    partitions = tuple(partitions)
    reached = []
    for budget in budgets:
        if not budget.governs(request.tenant):
            continue
        owner = scope_owner(budget.scope, request.tenant, request.session_id, request.api_key)
        if owner is None:
            continue
        amount = used(budget, owner, records, partitions, at)
        if reservations is not None:
            amount += reservations.pending(budget, owner, records, partitions, at)
        if amount >= budget.limit:
            end = window_end(budget.window, window_start(budget.window, at))
            reached.append(OverBudget(budget, amount, max(end - at, 0.0)))
    return sorted(reached, key=lambda over: SEVERITY[over.budget.action])
