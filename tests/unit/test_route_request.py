"""The router's one call per request: refused, blocked, cached or routed, and what it redacts."""

import json

import numpy as np

from pipeline.analytics import rows
from pipeline.envelope import (
    ChatRequest,
    Envelope,
    PiiFinding,
    RequestSection,
    Safety,
    Usage,
)
from pipeline.learn.usage import window_start
from pipeline.policy import Budget, Policy, load_policy
from pipeline.router import cache_entries
from pipeline.router.request import Blocked, Cached, Refused, RequestRouter, Routed
from pipeline.router.route import RouterRuntime
from pipeline.router.semantic_cache import SemanticCache
from pipeline.settings import DEFAULT_POLICY
from tests.unit.factories import make_signals

POLICY = load_policy(DEFAULT_POLICY)
NOW = 1_000_000.0
EMAIL = PiiFinding(entity="EMAIL_ADDRESS", message_index=0, start=9, end=20)


def envelope(text: str = "write to a@b.example", **signals) -> Envelope:
    body = ChatRequest(messages=[{"role": "user", "content": text}])
    return Envelope(
        request=RequestSection(tenant="acme", session_id="s1", body=body),
        signals=make_signals(**signals),
        safety=Safety(action="allow", jailbreak_score=0.0),
    )


def router(**kwargs) -> RequestRouter:
    runtime = RouterRuntime(rng=np.random.default_rng(0), policy_version="v1")
    return RequestRouter(
        runtime=runtime, cache=SemanticCache(), outcome_partitions=range(1), **kwargs
    )


def with_router(**router_section) -> Policy:
    data = POLICY.model_dump(by_alias=True, exclude_unset=True, mode="json")
    data["router"] = {**data["router"], **router_section}
    return Policy.model_validate(data)


def budgeted(action: str) -> tuple[Policy, dict[str, Usage]]:
    budget = Budget(
        name="daily", scope="tenant", metric="usd", window="day", limit=1, action=action
    )
    usage = Usage(
        scope="tenant", who="acme", window="day", start=window_start("day", NOW), partition=0, usd=2
    )
    return POLICY.model_copy(update={"budgets": [budget]}), {usage.key: usage}


def test_a_request_is_routed_with_the_findings_its_decision_redacts():
    strict = with_router(
        default={
            **POLICY.router.default.model_dump(),
            "safety": {"pii": {"EMAIL_ADDRESS": "redact"}},
        },
        decisions=[],
    )
    env = envelope()
    env.safety = Safety(
        action="allow", jailbreak_score=0.0, pii=[EMAIL], triggers=["pii:EMAIL_ADDRESS"]
    )
    answer = router().route(env, strict, NOW, NOW)
    assert isinstance(answer, Routed)
    assert answer.decision.redact == ["EMAIL_ADDRESS"]
    assert answer.envelope.request.body.messages[0].content == "write to <EMAIL_ADDRESS>"
    assert env.request.body.messages[0].content == "write to a@b.example"  # a copy was redacted
    assert answer.cache_lookup is None and answer.decision.policy_version == "v1"


def test_a_budget_that_rejects_answers_first_with_its_decision_and_retry():
    policy, usage = budgeted("reject")
    answer = router(usage=usage).route(envelope(), policy, NOW, NOW)
    assert isinstance(answer, Refused)
    assert answer.error_type == "insufficient_quota" and answer.retry_after_s is not None
    assert answer.decision is not None
    assert (answer.decision.strategy, answer.decision.budget) == ("budget", "daily")
    assert answer.decision.budget_action == "reject"


def test_a_budget_that_flags_marks_the_decision_and_reserves_the_estimate():
    policy, usage = budgeted("flag")
    routing = router(usage=usage)
    answer = routing.route(envelope(), policy, NOW, NOW)
    assert isinstance(answer, Routed)
    assert (answer.decision.budget, answer.decision.budget_action) == ("daily", "flag")
    assert routing.reservations.pending(policy.budgets[0], "acme", usage, range(1), NOW) > 0


def test_an_unknown_model_is_refused_and_a_blocking_decision_blocks():
    env = envelope()
    env.request.body.model = "gpt-9"  # type: ignore[union-attr]
    refused = router().route(env, POLICY, NOW, NOW)
    assert isinstance(refused, Refused) and refused.error_type == "model_not_found"
    assert refused.decision is None
    strict = with_router(
        default={**POLICY.router.default.model_dump(), "safety": {"jailbreak_action": "block"}},
        decisions=[],
    )
    flagged = envelope()
    flagged.safety = Safety(action="flag", jailbreak_score=0.9, triggers=["jailbreak"])
    assert router().route(flagged, strict, NOW, NOW) == Blocked("general")


def test_a_cacheable_request_misses_then_hits_what_dispatch_stored():
    policy = with_router(cache={"enabled": True, "similarity": 0.95, "ttl_s": 60})
    routing = router()
    first = routing.route(envelope("what is kafka"), policy, NOW, NOW)
    assert isinstance(first, Routed) and first.cache_lookup == "miss"
    assert first.decision.cache_ttl_s == 60
    env = envelope("what is kafka")
    env.decision = first.decision
    entry = cache_entries.entry_for(env, "wrp-small-8b", {"id": "x"}, NOW)
    assert (entry.key, entry.expires_at) == (cache_entries.key_of(env), NOW + 60)
    assert first.decision.cache_scope == cache_entries.scope_of(env, first.decision.decision)
    cache_entries.store(routing.cache, entry)
    second = routing.route(envelope("what  is kafka "), policy, NOW + 1, NOW + 1)
    assert isinstance(second, Cached) and second.cache_lookup == "hit"
    assert second.answer.response == {"id": "x"}
    assert (second.decision.strategy, second.decision.model) == ("cache", "wrp-small-8b")
    assert second.decision.cache_hit and second.decision.pool == POLICY.model("wrp-small-8b").pool
    tools = envelope("what is kafka", tools_present=True)
    assert router().route(tools, policy, NOW, NOW).cache_lookup is None


def test_a_request_that_fits_no_candidate_after_a_cache_miss_counts_the_miss():
    policy = with_router(cache={"enabled": True, "similarity": 0.95, "ttl_s": 60})
    answer = router().route(envelope(prompt_tokens=10**6), policy, NOW, NOW)
    assert isinstance(answer, Refused) and answer.error_type == "context_length_exceeded"
    assert answer.cache_lookup == "miss"


def test_a_redacting_decision_caches_under_the_redacted_request_and_stores_no_key_of_the_text():
    policy = with_router(
        default={
            **POLICY.router.default.model_dump(),
            "safety": {"pii": {"EMAIL_ADDRESS": "redact"}},
        },
        decisions=[],
        cache={"enabled": True, "similarity": 0.95, "ttl_s": 60},
    )
    env = envelope()
    env.safety = Safety(
        action="allow", jailbreak_score=0.0, pii=[EMAIL], triggers=["pii:EMAIL_ADDRESS"]
    )
    answer = router().route(env, policy, NOW, NOW)
    assert isinstance(answer, Routed)
    onward = answer.envelope.model_copy(update={"decision": answer.decision})
    assert answer.decision.cache_key == cache_entries.key_of(answer.envelope)
    assert answer.decision.cache_key != cache_entries.key_of(env)  # not a hash of the address
    entry = cache_entries.entry_for(onward, "wrp-small-8b", {"id": "x"}, NOW)
    assert entry is not None and entry.key == answer.decision.cache_key
    stored = json.loads(rows.request_row(onward)[-1])
    assert "cache_key" not in stored["decision"] and stored["decision"]["cache_scope"]


def test_no_cache_entry_without_a_scope_or_for_another_tenants_scope():
    policy = with_router(cache={"enabled": True, "similarity": 0.95, "ttl_s": 60})
    first = router().route(envelope("what is kafka"), policy, NOW, NOW)
    assert isinstance(first, Routed)
    older = first.envelope.model_copy(
        update={"decision": first.decision.model_copy(update={"cache_scope": None})}
    )
    assert cache_entries.entry_for(older, "wrp-small-8b", {"id": "x"}, NOW) is None
    other = first.decision.cache_scope.model_copy(update={"tenant": "globex"})
    foreign = first.envelope.model_copy(
        update={"decision": first.decision.model_copy(update={"cache_scope": other})}
    )
    assert cache_entries.entry_for(foreign, "wrp-small-8b", {"id": "x"}, NOW) is None
