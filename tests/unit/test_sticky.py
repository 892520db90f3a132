"""Sticky sessions: the pure keep-or-switch rule, and route() keeping a session's turns on one
model with the default policy."""

import time

import numpy as np
import pytest

from pipeline.envelope import ChatRequest, Envelope, PoolState, RequestSection, Safety
from pipeline.evaluation.sticky_replay import Routed, dialogue, measure
from pipeline.policy import ModelCard, Policy, StickyConfig, load_policy
from pipeline.router.route import RouterRuntime, route
from pipeline.router.sticky import SessionTurn, hold, switch_cost
from pipeline.settings import DEFAULT_POLICY
from tests.unit.factories import make_signals

SMALL = ModelCard(
    name="small",
    pool="a",
    context_length=8192,
    price={"input_per_mtok": 0.1, "output_per_mtok": 0.2},
)
LARGE = ModelCard(
    name="large",
    pool="b",
    context_length=8192,
    price={"input_per_mtok": 1.0, "output_per_mtok": 1.0},
)
CONFIG = StickyConfig(margin=0.05, cached_input_share=0.1, idle_s=300)
NOW = 1000.0


def on(model: str, cached_tokens: int = 1000, at: float = NOW - 1) -> SessionTurn:
    return SessionTurn(model=model, cached_tokens=cached_tokens, at=at)


def decide(previous, choice, estimates, candidates=(SMALL, LARGE), cost_weight=0.0, **kw):
    return hold(previous, choice, list(candidates), estimates, 2000, cost_weight, CONFIG, NOW, **kw)


def test_switch_cost_is_the_forfeited_cache_discount_in_quality_points_plus_the_margin():
    # 1,000 cached tokens at $1/M, 90% discount: $0.90 per 1,000 requests; lambda 0.1 -> 0.09
    assert switch_cost(LARGE, 1000, 0.1, CONFIG) == pytest.approx(0.09 + 0.05)
    # a negative lambda (paying for quality) does not make switching free
    assert switch_cost(LARGE, 1000, -1.0, CONFIG) == pytest.approx(0.05)


def test_keeps_the_previous_model_when_the_advantage_is_within_the_switch_cost():
    out = decide(on("small"), LARGE, {"small": 0.60, "large": 0.64})
    assert (out.model.name, out.sticky, out.stays, out.switched_from) == ("small", True, True, None)


def test_the_cache_discount_can_outweigh_a_larger_advantage():
    estimates = {"small": 0.70, "large": 0.60}
    # lambda 0: only the margin (0.05) stands against the 0.10 advantage
    assert decide(on("large", 1000), SMALL, estimates).switched_from == "large"
    # lambda 0.1: staying on large keeps a 0.09 discount, + margin 0.05 > 0.10
    assert decide(on("large", 1000), SMALL, estimates, cost_weight=0.1).sticky


def test_switches_when_the_advantage_exceeds_the_switch_cost():
    out = decide(on("small"), LARGE, {"small": 0.60, "large": 0.80})
    assert (out.model.name, out.sticky, out.stays, out.switched_from) == (
        "large",
        False,
        False,
        "small",
    )


def test_switches_when_the_previous_model_is_no_longer_a_usable_candidate():
    out = decide(on("large"), SMALL, {"small": 0.6}, candidates=[SMALL])
    assert (out.model.name, out.switched_from) == ("small", "large")


def test_a_forced_switch_overrides_stickiness():
    out = decide(on("small"), LARGE, {"small": 0.60, "large": 0.61}, forced=True)
    assert (out.model.name, out.sticky, out.switched_from) == ("large", False, "small")


def test_no_memory_idle_session_or_disabled_leaves_the_choice_alone_and_off_counts_switches():
    estimates = {"small": 0.60, "large": 0.61}
    assert decide(None, LARGE, estimates).model.name == "large"
    assert decide(on("small", at=NOW - 301), LARGE, estimates).switched_from is None
    off = hold(
        on("small"), LARGE, [SMALL, LARGE], estimates, 2000, 0.0, StickyConfig(enabled=False), NOW
    )
    assert (off.model.name, off.sticky, off.stays, off.switched_from) == (
        "large",
        False,
        False,
        "small",
    )


def test_staying_by_choice_is_not_held():
    out = decide(on("large"), LARGE, {"small": 0.6, "large": 0.8})
    assert (out.model.name, out.sticky, out.stays, out.switched_from) == (
        "large",
        False,
        True,
        None,
    )


# --- through route() with the default policy ------------------------------------------------

POLICY = load_policy(DEFAULT_POLICY)


def policy_with(**sticky) -> Policy:
    data = POLICY.model_dump(by_alias=True)
    data["router"]["sticky"] = {**data["router"]["sticky"], **sticky}
    return Policy.model_validate(data)


def turn(session: str, tokens: int) -> Envelope:
    """A general-decision turn (Thompson over small and large) of ``session``."""
    return Envelope(
        request=RequestSection(
            session_id=session, body=ChatRequest(messages=[{"role": "user", "content": "x"}])
        ),
        signals=make_signals(prompt_tokens=tokens, domain="history"),
        safety=Safety(action="allow", jailbreak_score=0.0),
    )


def session_models(policy: Policy, runtime: RouterRuntime, session: str, turns: int) -> list:
    return [route(turn(session, 200 + 300 * t), policy, runtime) for t in range(turns)]


def test_thompson_alternates_without_sticky_and_holds_a_session_with_it():
    off = session_models(
        policy_with(enabled=False), RouterRuntime(rng=np.random.default_rng(3)), "s", 30
    )
    assert len({d.model for d in off}) == 2, "the Thompson draws should move an unsticky session"
    assert not any(d.sticky for d in off)
    assert any(d.switched_from for d in off), "switches are recorded with stickiness off too"
    runtime = RouterRuntime(rng=np.random.default_rng(3))
    held = session_models(POLICY, runtime, "s", 30)
    assert {d.model for d in held[1:]} == {held[0].model}
    assert any(d.sticky for d in held), "some turns' draws should have been held back"
    assert not any(d.explored for d in held[1:])
    # another session of the same router is not bound by it
    assert route(turn("t", 200), POLICY, runtime).switched_from is None


def test_a_saturated_pool_moves_the_session_and_records_where_from():
    runtime = RouterRuntime(rng=np.random.default_rng(0))
    first = route(turn("s", 200), POLICY, runtime)
    pool = POLICY.model(first.model).pool
    runtime.pools = {
        "e": PoolState(
            endpoint="e",
            pool=pool,
            requests=10,
            errors=0,
            latency_ms_ewma=100.0,
            in_flight=10,
            capacity=10,
            updated_at=time.time(),
        )
    }
    moved = route(turn("s", 500), POLICY, runtime)
    assert moved.model != first.model and moved.switched_from == first.model
    assert first.model in moved.skipped


def test_a_budget_downgrade_moves_a_session_to_the_cheapest_candidate():
    runtime = RouterRuntime(rng=np.random.default_rng(3))
    route(turn("s", 200), POLICY, runtime)
    moved = route(turn("s", 500), POLICY, runtime, downgrade=True)
    cheapest = min(moved.candidates, key=lambda name: POLICY.model(name).price.cost(500, 512))
    assert moved.model == cheapest and not moved.sticky


# --- the replay's transcript parsing and cost model ------------------------------------------


def test_hh_rlhf_transcripts_become_chat_messages():
    text = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: and now?\n\nAssistant: bye"
    assert dialogue(text) == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "and now?"},
        {"role": "assistant", "content": "bye"},
    ]


def test_the_cost_model_bills_a_kept_prefix_at_the_cached_rate_and_a_switch_in_full():
    def turn(model: str, prompt: int, prefix: int) -> Routed:
        return Routed(
            make_signals(domain="history"), model, "general", [], False, None, prompt, prefix, 100
        )

    small, large = POLICY.model("wrp-small-8b"), POLICY.model("wrp-large-70b")
    stay = measure(POLICY, [[turn(large.name, 1000, 0), turn(large.name, 3000, 2000)]])
    move = measure(POLICY, [[turn(small.name, 1000, 0), turn(large.name, 3000, 2000)]])
    full = small.price.cost(1000, 100) + large.price.cost(3000, 100)
    assert move["cost_usd"] == pytest.approx(full, abs=1e-6)
    assert (move["switches"], move["reprefill_tokens"], move["sessions_switched_share"]) == (
        1,
        2000,
        1.0,
    )
    discount = 2000 * large.price.input_per_mtok * 0.9 / 1e6
    assert stay["cost_usd"] == pytest.approx(2 * large.price.cost(2000, 100) - discount, abs=1e-6)
    assert (stay["switches"], stay["reprefill_tokens"]) == (0, 0)
    assert stay["mean_quality_estimate"] == pytest.approx(0.8)
