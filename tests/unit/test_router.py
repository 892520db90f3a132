import numpy as np
import pytest

from pipeline.envelope import ChatRequest, Envelope, RequestSection, RouterState, Safety
from pipeline.policy import load_policy
from pipeline.router.route import RouterRuntime, RoutingError, route
from pipeline.settings import DEFAULT_POLICY
from tests.unit.factories import make_signals

POLICY = load_policy(DEFAULT_POLICY)


def envelope(
    domain="other",
    tokens=50,
    tools=False,
    model="auto",
    max_tokens=None,
    keywords=(),
    action="allow",
) -> Envelope:
    body = ChatRequest(
        model=model, messages=[{"role": "user", "content": "x"}], max_tokens=max_tokens
    )
    context = "short" if tokens <= 2048 else ("medium" if tokens <= 8192 else "long")
    signals = make_signals(
        prompt_tokens=tokens,
        context_class=context,
        tools_present=tools,
        keywords=list(keywords),
        domain=domain,
    )
    return Envelope(
        request=RequestSection(body=body),
        signals=signals,
        safety=Safety(action=action, jailbreak_score=0.0),
    )


def runtime(**kwargs) -> RouterRuntime:
    return RouterRuntime(rng=np.random.default_rng(0), **kwargs)


def test_highest_priority_matching_decision_wins():
    code = "computer science"
    assert route(envelope(domain=code, tools=True), POLICY, runtime()).decision == "agentic"
    assert route(envelope(domain=code), POLICY, runtime()).decision == "code"
    assert route(envelope(keywords=["code"]), POLICY, runtime()).decision == "code"
    assert route(envelope(domain="math"), POLICY, runtime()).decision == "reasoning"
    assert route(envelope(domain="history"), POLICY, runtime()).decision == "general"
    long = route(envelope(tokens=20_000), POLICY, runtime())
    assert (long.decision, long.model, long.pool) == ("long_context", "wrp-long-128k", "long")


def test_candidates_that_cannot_hold_the_prompt_are_dropped():
    decision = route(envelope(tokens=7_900), POLICY, runtime())
    assert decision.candidates == ["wrp-large-70b"]


def test_explicit_known_model_is_honoured_and_unknown_model_is_an_error():
    decision = route(envelope(model="wrp-small-8b"), POLICY, runtime())
    assert (decision.decision, decision.model) == ("explicit", "wrp-small-8b")
    with pytest.raises(RoutingError) as info:
        route(envelope(model="gpt-9"), POLICY, runtime())
    assert info.value.error_type == "model_not_found" and "wrp-small-8b" in str(info.value)


def test_no_model_with_enough_context_is_an_error():
    with pytest.raises(RoutingError) as info:
        route(envelope(tokens=200_000), POLICY, runtime())
    assert info.value.error_type == "context_length_exceeded"


def test_thompson_follows_the_evidence():
    state = {
        "general/wrp-small-8b": RouterState(
            decision="general", model="wrp-small-8b", successes=2, failures=98, observations=100
        ),
        "general/wrp-large-70b": RouterState(
            decision="general", model="wrp-large-70b", successes=98, failures=2, observations=100
        ),
    }
    generator = np.random.default_rng(0)
    picks = [
        route(envelope(), POLICY, RouterRuntime(arms=state, rng=generator)).model
        for _ in range(200)
    ]
    assert picks.count("wrp-large-70b") == 200
    flipped = {
        k: v.model_copy(update={"successes": v.failures, "failures": v.successes})
        for k, v in state.items()
    }
    picks = [
        route(envelope(), POLICY, RouterRuntime(arms=flipped, rng=generator)).model
        for _ in range(200)
    ]
    assert picks.count("wrp-small-8b") == 200


def test_thompson_explores_both_arms_without_evidence():
    generator = np.random.default_rng(0)
    picks = {route(envelope(), POLICY, RouterRuntime(rng=generator)).model for _ in range(50)}
    assert picks == {"wrp-small-8b", "wrp-large-70b"}


def test_route_safe_verdict_pins_the_safe_model():
    decision = route(envelope(domain="math", action="route_safe"), POLICY, runtime())
    assert (decision.decision, decision.model) == ("safety", POLICY.safety.safe_model)
