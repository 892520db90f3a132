"""The dispatch ladder (rungs, fallback, cascade checks) and the outcomes it ends in."""

import asyncio

from pipeline.envelope import Attempt, Decision, Envelope, RequestSection
from pipeline.policy import CascadeConfig, load_policy
from pipeline.pool import outcomes
from pipeline.pool.cascade_checks import arithmetic_holds, failed_check
from pipeline.pool.dispatcher import PoolCall
from pipeline.pool.ladder import Climb, Ladder
from pipeline.settings import DEFAULT_POLICY
from tests.unit.factories import make_signals

POLICY = load_policy(DEFAULT_POLICY)
SMALL, LARGE, CODER = "wrp-small-8b", "wrp-large-70b", "wrp-coder-32b"
CHECKS = CascadeConfig(checks=["empty", "refusal"])


def answer(text: str, logprobs: list[float] | None = None) -> dict:
    choice: dict = {"message": {"role": "assistant", "content": text}}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": v} for v in logprobs]}
    return {"choices": [choice]}


def test_cascade_checks():
    config = CascadeConfig(checks=["empty", "refusal", "logprob", "arithmetic"])
    assert failed_check(answer("  "), config) == "empty"
    assert failed_check(answer("I'm sorry, but I can't help with that."), config) == "refusal"
    assert failed_check(answer("Paris", [-3.0, -2.5]), config) == "logprob"
    assert failed_check(answer("16 - 3 = 12, so 12 eggs"), config) == "arithmetic"
    assert failed_check(answer("16 - 3 = 13 and 13 x 2 = $26", [-0.1]), config) is None
    assert arithmetic_holds("1,200 / 4 = 300")
    assert arithmetic_holds("20 + 80 + 160 = 260 eggs, and 2 + 3 x 4 = 14")
    assert not arithmetic_holds("2 + 3 x 4 = 20")
    assert not arithmetic_holds("7 / 0 = 1")


def ok(text: str, usage: dict | None = None, **call) -> PoolCall:
    response = answer(text)
    if usage is not None:
        response["usage"] = usage
    return PoolCall(endpoint="http://e", attempts=1, latency_ms=5.0, response=response, **call)


def failed(error_type: str = "pool_error", **call) -> PoolCall:
    return PoolCall(
        endpoint="http://e",
        attempts=2,
        latency_ms=5.0,
        response=None,
        error_type=error_type,
        **call,
    )


def climb(ladder: Ladder, calls: dict[str, list[PoolCall]]) -> Climb[PoolCall]:
    """Climb ``ladder`` where each model answers with its next call in ``calls``."""

    async def call(model: str) -> PoolCall:
        return calls[model].pop(0)

    return asyncio.run(ladder.climb(call))


def test_the_first_answer_that_passes_the_checks_stands():
    ladder = Ladder((SMALL, CODER, LARGE), None, CHECKS)
    done = climb(ladder, {SMALL: [ok("")], CODER: [ok("I'm sorry, I can't")], LARGE: [ok("4")]})
    assert [m for m, _ in done.calls] == [SMALL, CODER, LARGE]
    assert done.escalated == [SMALL, CODER] and done.model == LARGE
    done = climb(ladder, {SMALL: [ok("4")]})
    assert (done.model, done.escalated) == (SMALL, [])


def test_the_last_rung_a_failure_and_a_streamed_answer_stand_whatever_the_checks_say():
    ladder = Ladder((SMALL, LARGE), None, CHECKS)
    assert climb(ladder, {SMALL: [ok("")], LARGE: [ok("")]}).model == LARGE
    assert climb(ladder, {SMALL: [failed()]}).model == SMALL
    assert climb(ladder, {SMALL: [ok("", relayed=True)]}).escalated == []


def test_a_failed_call_falls_back_once_before_any_escalation():
    ladder = Ladder((SMALL, LARGE), CODER, CHECKS)
    done = climb(ladder, {SMALL: [failed()], CODER: [ok("")], LARGE: [failed()]})
    assert [m for m, _ in done.calls] == [SMALL, CODER, LARGE]
    assert done.fallback_from == SMALL and done.escalated == [CODER]
    # no fallback after a passed deadline, after part of the answer was relayed, or once escalated
    assert climb(ladder, {SMALL: [failed("deadline_exceeded")]}).fallback_from is None
    assert climb(ladder, {SMALL: [failed(relayed=True)]}).fallback_from is None
    done = climb(ladder, {SMALL: [ok("")], LARGE: [failed()]})
    assert (done.model, done.fallback_from) == (LARGE, None)


def test_the_ladder_of_a_decision_under_the_policy_in_force():
    decision = Decision(
        decision="general",
        candidates=[SMALL],
        model=SMALL,
        pool="small",
        strategy="static",
        ladder=[LARGE],
        fallback="retired-model",
    )
    ladder = Ladder.of(decision, POLICY)
    assert ladder.rungs == (SMALL, LARGE) and ladder.fallback is None
    assert ladder.unknown(POLICY) == []
    gone = decision.model_copy(update={"ladder": ["retired-model"]})
    assert Ladder.of(gone, POLICY).unknown(POLICY) == ["retired-model"]


def envelope(decision: Decision) -> Envelope:
    request = RequestSection(request_id="r1", tenant="acme")
    return Envelope(request=request, signals=make_signals(prompt_tokens=40), decision=decision)


def test_a_dispatched_outcome_pays_every_call_and_counts_the_last_answers_tokens():
    decision = Decision(
        decision="general",
        candidates=[SMALL, LARGE],
        model=SMALL,
        pool="small",
        strategy="cascade",
        ladder=[LARGE],
        fallback=CODER,
        explored=True,
        prior=0.7,
    )
    attempt = Attempt(
        model=SMALL,
        pool="small",
        endpoint="http://e",
        status="error",
        started_at=9.9,
        latency_ms=1.0,
    )
    done = Climb(
        calls=[
            (SMALL, failed(log=(attempt,))),
            (CODER, ok("", {"prompt_tokens": 100, "completion_tokens": 5}, gpu_cost_usd=0.25)),
            (LARGE, ok("4", {"completion_tokens": 10}, energy_j=2.0, ttft_ms=3.0)),
        ],
        escalated=[CODER],
        fallback_from=SMALL,
    )
    outcome = outcomes.dispatched(envelope(decision), POLICY, done, 10.0, 10.5)
    price = {card.name: card.price for card in POLICY.models}
    assert (outcome.model, outcome.pool, outcome.status) == (LARGE, "large", "ok")
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (40, 10)
    assert outcome.cost_usd == round(price[CODER].cost(100, 5) + price[LARGE].cost(40, 10), 8)
    assert (outcome.gpu_cost_usd, outcome.energy_j, outcome.attempts) == (0.25, 2.0, 4)
    assert outcome.attempt_log == [attempt]
    assert (outcome.escalated_from, outcome.fallback_from) == ([CODER], SMALL)
    assert (outcome.latency_ms, outcome.ttft_ms, outcome.explored, outcome.prior) == (
        500.0,
        3.0,
        True,
        0.7,
    )
    strongest = POLICY.strongest([SMALL, LARGE], "other")
    assert strongest is not None and outcome.baseline_model == strongest.name
    assert outcome.baseline_cost_usd == round(strongest.price.cost(40, 10), 8)
    lost = outcomes.dispatched(envelope(decision), POLICY, Climb(calls=[(SMALL, failed())]), 0, 1)
    assert (lost.status, lost.error_type, lost.cost_usd, lost.baseline_cost_usd) == (
        "error",
        "pool_error",
        0.0,
        0.0,
    )


def test_a_cached_answer_is_free_and_counts_the_cached_tokens():
    decision = Decision(
        decision="general", candidates=[SMALL], model=SMALL, pool="small", strategy="static"
    )
    response = {**answer("4"), "usage": {"prompt_tokens": 12, "completion_tokens": 3}}
    outcome = outcomes.from_cache(
        envelope(decision), POLICY, "general", [SMALL], SMALL, "small", response, 1.0, 1.25
    )
    assert (outcome.endpoint, outcome.cache_hit, outcome.attempts, outcome.cost_usd) == (
        "cache",
        True,
        0,
        0.0,
    )
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.latency_ms) == (12, 3, 250.0)
    assert outcome.baseline_model == SMALL and outcome.tenant == "acme"
