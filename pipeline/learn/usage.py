"""Budget usage: what outcomes say each tenant, API key and session was served, per window.

The learner folds every outcome into one :class:`~pipeline.envelope.Usage` record per (scope,
who, window, outcome partition) that a budget of the policy tracks. A record holds its window's
start and the offset of the last outcome folded in, so the fold is idempotent: an outcome
redelivered after a crash sits at or below that offset and is skipped, and a record never holds
two windows (a new window replaces the old counts). Routers sum a scope's records over the
partitions (:func:`used`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pipeline.envelope import Outcome, Usage, usage_key
from pipeline.policy import Budget, BudgetScope, BudgetWindow

#: The partition of usage re-seeded from the analytics store (``wrp analytics restore``).
RESTORED = -1
#: Request ids a usage record remembers: enough for a router to see its own requests counted.
RECENT = 32


def window_start(window: BudgetWindow, at: float) -> float:
    """Start of the calendar window (UTC) that holds ``at``, epoch seconds."""
    if window == "minute":
        return float(int(at // 60) * 60)
    moment = datetime.fromtimestamp(at, UTC)
    if window == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp()


def window_end(window: BudgetWindow, start: float) -> float:
    if window == "minute":
        return start + 60
    if window == "day":
        return start + 86400
    moment = datetime.fromtimestamp(start, UTC)
    year, month = divmod(moment.month, 12)
    return moment.replace(year=moment.year + year, month=month + 1).timestamp()


def scope_owner(
    scope: BudgetScope, tenant: str, session_id: str | None, api_key: str | None
) -> str | None:
    """Whom a budget of ``scope`` counts a request against; None when it has no such scope (a
    request without a session or an API key)."""
    if scope == "tenant":
        return tenant
    if scope == "api_key":
        return api_key
    return f"{tenant}/{session_id}" if session_id else None  # tenant names hold no "/"


def tracked(budgets: Iterable[Budget], tenant: str) -> set[tuple[BudgetScope, BudgetWindow]]:
    """The (scope, window) pairs whose usage the budgets governing ``tenant`` read."""
    return {(b.scope, b.window) for b in budgets if b.governs(tenant)}


def served(outcome: Outcome) -> tuple[int, float]:
    """Tokens and USD an outcome was served: a cached answer or a failed call used no model."""
    if outcome.status != "ok" or outcome.cache_hit:
        return 0, outcome.cost_usd
    return outcome.prompt_tokens + outcome.completion_tokens, outcome.cost_usd


def fold_usage(
    current: Usage | None,
    outcome: Outcome,
    scope: BudgetScope,
    who: str,
    window: BudgetWindow,
    partition: int,
    offset: int,
) -> Usage | None:
    """The record after ``outcome`` (at ``offset`` of ``partition``), or None when it must not
    change: the outcome was counted already, or belongs to a window that has passed."""
    start = window_start(window, outcome.completed_at)
    if current is not None and (
        current.start > start or (current.start == start and offset <= current.offset)
    ):
        return None
    same = current is not None and current.start == start
    tokens, usd = served(outcome)
    return Usage(
        scope=scope,
        who=who,
        window=window,
        start=start,
        partition=partition,
        offset=offset,
        requests=(current.requests if same and current else 0) + 1,
        tokens=(current.tokens if same and current else 0) + tokens,
        usd=round((current.usd if same and current else 0.0) + usd, 8),
        recent=[*(current.recent if same and current else [])[-(RECENT - 1) :], outcome.request_id],
        updated_at=outcome.completed_at,
    )


#: Seconds a record outlives the end of its window before the learner deletes it: routers read
#: only the current window, so an ended one (a finished session's) only takes room.
KEPT_AFTER_END_S = 600.0


def ended(record: Usage, at: float) -> bool:
    """The record's window ended more than :data:`KEPT_AFTER_END_S` before ``at``."""
    return window_end(record.window, record.start) < at - KEPT_AFTER_END_S


def newer(a: Usage | None, b: Usage | None) -> Usage | None:
    """The later of two versions of one record (by window, then offset)."""
    if a is None or b is None:
        return a or b
    return a if (a.start, a.offset) >= (b.start, b.offset) else b


def used(
    budget: Budget,
    who: str,
    records: Mapping[str, Usage],
    partitions: Iterable[int],
    at: float,
) -> float:
    """How much of ``budget``'s metric ``who`` was served in the window holding ``at``."""
    start = window_start(budget.window, at)
    total = 0.0
    for partition in (*partitions, RESTORED):
        record = records.get(usage_key(budget.scope, who, budget.window, partition))
        if record is not None and record.start == start:
            total += getattr(record, budget.metric)
    return total
