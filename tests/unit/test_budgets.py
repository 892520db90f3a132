"""Budgets: windows, idempotent usage folding, what a reached budget does to a request."""

from datetime import UTC, datetime

import pytest
import yaml

from pipeline.envelope import ChatRequest, Envelope, Outcome, RequestSection, Safety, Usage
from pipeline.learn.usage import (
    RECENT,
    RESTORED,
    ended,
    fold_usage,
    newer,
    scope_owner,
    used,
    window_end,
)
from pipeline.learn.usage import window_start as start_of
from pipeline.policy import Budget, PolicyError, load_policy, parse_policy
from pipeline.router.budgets import HOLD_S, Reservation, Reservations, over_budget
from pipeline.router.route import RouterRuntime, route
from pipeline.settings import DEFAULT_POLICY
from tests.unit.factories import make_outcome, make_signals

POLICY = load_policy(DEFAULT_POLICY)
NOON = datetime(2026, 12, 5, 12, 30, 15, tzinfo=UTC).timestamp()


def outcome(tokens: int = 100, usd: float = 0.01, at: float = NOON, **extra) -> Outcome:
    fields = {
        "request_id": "r1",
        "tenant": "acme",
        "session_id": "s1",
        "latency_ms": 1.0,
        "prompt_tokens": tokens // 2,
        "completion_tokens": tokens - tokens // 2,
        "cost_usd": usd,
        "dispatched_at": at - 1,
        "completed_at": at,
    }
    return make_outcome(**{**fields, **extra})


def test_windows_are_utc_calendar_minute_day_and_month():
    assert start_of("minute", NOON) == datetime(2026, 12, 5, 12, 30, tzinfo=UTC).timestamp()
    assert start_of("day", NOON) == datetime(2026, 12, 5, tzinfo=UTC).timestamp()
    month = start_of("month", NOON)
    assert month == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert window_end("month", month) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert window_end("day", start_of("day", NOON)) - start_of("day", NOON) == 86400


def test_an_outcome_redelivered_at_or_below_the_folded_offset_is_not_counted_again():
    first = fold_usage(None, outcome(100), "tenant", "acme", "day", 2, offset=7)
    assert first is not None and (first.requests, first.tokens, first.offset) == (1, 100, 7)
    second = fold_usage(first, outcome(50), "tenant", "acme", "day", 2, offset=8)
    assert second is not None and (second.requests, second.tokens) == (2, 150)
    assert fold_usage(second, outcome(50), "tenant", "acme", "day", 2, offset=8) is None
    assert fold_usage(second, outcome(100), "tenant", "acme", "day", 2, offset=7) is None


def test_a_new_window_starts_from_zero_and_a_late_outcome_of_a_past_window_is_dropped():
    today = fold_usage(None, outcome(100), "tenant", "acme", "day", 0, offset=1)
    tomorrow = fold_usage(today, outcome(30, at=NOON + 86400), "tenant", "acme", "day", 0, 2)
    assert tomorrow is not None and (tomorrow.requests, tomorrow.tokens) == (1, 30)
    assert fold_usage(tomorrow, outcome(5), "tenant", "acme", "day", 0, offset=3) is None


def test_failed_calls_and_cached_answers_count_as_requests_but_not_tokens():
    failed = fold_usage(None, outcome(100, usd=0.0, status="error"), "tenant", "a", "day", 0, 1)
    cached = fold_usage(failed, outcome(100, usd=0.0, cache_hit=True), "tenant", "a", "day", 0, 2)
    assert cached is not None and (cached.requests, cached.tokens, cached.usd) == (2, 0, 0.0)


def test_newer_keeps_the_later_window_then_the_higher_offset():
    a = Usage(scope="tenant", who="t", window="day", start=0, partition=0, offset=5)
    b = a.model_copy(update={"offset": 9})
    c = a.model_copy(update={"start": 86400, "offset": 1})
    assert newer(a, b) is b and newer(b, a) is b and newer(b, c) is c and newer(None, a) is a


def test_usage_sums_the_partitions_and_the_restored_share_of_the_current_window_only():
    budget = Budget(name="b", scope="tenant", metric="tokens", window="day", limit=10)
    day = start_of("day", NOON)
    records = {
        r.key: r
        for r in (
            Usage(scope="tenant", who="t", window="day", start=day, partition=0, tokens=3),
            Usage(scope="tenant", who="t", window="day", start=day, partition=3, tokens=4),
            Usage(scope="tenant", who="t", window="day", start=day, partition=RESTORED, tokens=2),
            Usage(scope="tenant", who="t", window="day", start=day - 86400, partition=1, tokens=99),
            Usage(scope="tenant", who="u", window="day", start=day, partition=1, tokens=50),
        )
    }
    assert used(budget, "t", records, range(4), NOON) == 9


def test_sessions_are_counted_within_their_tenant_and_missing_scopes_count_nothing():
    assert scope_owner("session", "acme", "s1", None) == "acme/s1"
    assert scope_owner("session", "acme", None, None) is None
    assert scope_owner("api_key", "acme", "s1", None) is None
    assert scope_owner("tenant", "acme", None, None) == "acme"


def request(tenant="acme", session="s1") -> RequestSection:
    body = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    return RequestSection(tenant=tenant, session_id=session, body=body)


def usage_of(who: str, scope="tenant", window="day", **counts) -> dict[str, Usage]:
    record = Usage(
        scope=scope, who=who, window=window, start=start_of(window, NOON), partition=0, **counts
    )
    return {record.key: record}


def test_a_budget_acts_once_its_scope_is_at_the_limit_and_the_strictest_comes_first():
    budgets = [
        Budget(name="flag", scope="tenant", metric="usd", window="day", limit=1, action="flag"),
        Budget(name="hard", scope="tenant", metric="usd", window="day", limit=2),
    ]
    below = usage_of("acme", usd=0.99)
    assert over_budget(budgets, request(), below, range(1), NOON) == []
    over = over_budget(budgets, request(), usage_of("acme", usd=2.0), range(1), NOON)
    assert [o.budget.name for o in over] == ["hard", "flag"]
    assert over[0].error_type == "insufficient_quota"
    assert over[0].retry_after_s == pytest.approx(start_of("day", NOON) + 86400 - NOON)


def test_budgets_govern_only_their_tenants_and_token_limits_are_rate_limits():
    budget = Budget(
        name="s", scope="session", metric="tokens", window="minute", limit=100, tenants=["acme"]
    )
    records = usage_of("acme/s1", scope="session", window="minute", tokens=100)
    over = over_budget([budget], request(), records, range(1), NOON)
    assert over and over[0].error_type == "rate_limit_exceeded"
    assert "100 of 100 tokens" in over[0].message
    assert over_budget([budget], request(session="s2"), records, range(1), NOON) == []
    assert over_budget([budget], request(tenant="beta"), records, range(1), NOON) == []


def test_a_downgrade_routes_to_the_cheapest_usable_candidate():
    spec = max([*POLICY.router.decisions, POLICY.router.default], key=lambda spec: len(spec.models))
    env = Envelope(
        request=request(),
        signals=make_signals(prompt_tokens=50),
        safety=Safety(action="allow", jailbreak_score=0.0),
    )
    cards = [POLICY.model(name) for name in spec.models]
    cheapest = min(cards, key=lambda card: card.price.cost(50, 512)).name
    decision = route(env, POLICY, RouterRuntime(), (spec, []), downgrade=True)
    assert decision.model == cheapest
    assert {name for name, why in decision.skipped.items() if why == "budget"} == {
        c.name for c in cards if c.name != cheapest
    }


def test_duplicate_budget_names_are_refused_with_the_fix():
    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["budgets"] = [
        {"name": "daily", "scope": "tenant", "metric": "usd", "window": "day", "limit": 5},
        {"name": "daily", "scope": "session", "metric": "tokens", "window": "day", "limit": 5},
    ]
    with pytest.raises(PolicyError, match="duplicate name"):
        parse_policy(data, DEFAULT_POLICY)
    data["budgets"] = [{"name": "x", "scope": "team", "metric": "usd", "window": "day", "limit": 1}]
    with pytest.raises(PolicyError, match=r"budgets\.0\.scope|budgets\[0\]\.scope"):
        parse_policy(data, DEFAULT_POLICY)


def test_a_reservation_counts_until_its_request_shows_up_in_the_counted_usage():
    budget = Budget(name="s", scope="session", metric="tokens", window="day", limit=100)
    reservations = Reservations()

    def hold(session: str, rid: str, tokens: int, records=None) -> None:
        held = Reservation(rid, tokens=tokens, usd=0.1, at=NOON)
        reservations.reserve([budget], request(session=session), held, records or {}, range(1))

    hold("s1", "r1", 60)
    hold("s1", "r2", 50)
    hold("s2", "r3", 500)
    counted = usage_of("acme/s1", scope="session", tokens=55, requests=1, recent=["r1"])
    # r1 is counted (55 actual tokens), r2 is still held at its estimate: 55 + 50 >= 100
    over = over_budget([budget], request(), counted, range(1), NOON + 1, reservations)
    assert over and over[0].used == 105
    assert reservations.pending(budget, "acme/s1", counted, range(1), NOON + 1) == 50
    assert reservations.pending(budget, "acme/s1", counted, range(1), NOON + HOLD_S + 1) == 0
    per_request = budget.model_copy(update={"metric": "requests"})
    assert reservations.pending(per_request, "acme/s2", {}, range(1), NOON) == 1


def test_a_reservation_whose_id_scrolled_out_of_the_recent_ids_is_not_counted_twice():
    budget = Budget(name="t", scope="tenant", metric="requests", window="day", limit=10**6)
    reservations = Reservations()
    for i in range(60):
        held = Reservation(f"r{i}", tokens=1, usd=0.0, at=NOON)
        reservations.reserve([budget], request(), held, {}, range(1))
    recent = [f"r{i}" for i in range(60 - RECENT, 60)]
    counted = usage_of("acme", requests=60, recent=recent)
    assert reservations.pending(budget, "acme", counted, range(1), NOON + 1) == 0


def test_usage_of_a_window_that_ended_a_while_ago_is_deleted():
    record = usage_of("acme", window="minute")["tenant/acme/minute/0"]
    end = start_of("minute", NOON) + 60
    assert not ended(record, end + 1) and ended(record, end + 601)
