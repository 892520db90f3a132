import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.envelope import Feedback, Outcome
from pipeline.learn.evidence import (
    Served,
    credit_feedback,
    credit_outcome,
    fold,
    length_sampled,
)
from pipeline.policy import LearningConfig, Price
from pipeline.router.strategies.contextual import arm_statistics, features
from tests.unit.factories import make_outcome

LEARNING = LearningConfig(half_life_s=100.0, slo_miss_penalty=0.5)
NEVER = 1e12  # a half-life that never decays


def outcome(status: str, **fields) -> Outcome:
    return make_outcome(status=status, **fields)


def test_feedback_credits_the_arm_that_served_the_request():
    credit = credit_feedback(Feedback(request_id="r", score=0.75), Served("d", "m"))
    state = fold(None, credit, NEVER)
    assert (state.decision, state.model) == ("d", "m")
    assert (state.successes, state.failures, state.observations, state.version) == (
        0.75,
        0.25,
        1,
        1,
    )
    bad = Feedback(request_id="r", score=0.0, created_at=credit.at)
    state = fold(state, credit_feedback(bad, Served("d", "m")), NEVER)
    assert (state.successes, state.failures, state.version) == (0.75, 1.25, 2)


@pytest.mark.parametrize(
    ("judgement", "reward"),
    [
        ({"thumbs": "up"}, 1.0),
        ({"thumbs": "down"}, 0.0),
        ({"rating": 4}, 0.75),
        ({"verdict": "good_fit"}, 1.0),
        ({"verdict": "overprovisioned"}, 0.5),
        ({"verdict": "underpowered"}, 0.0),
        ({"verdict": "failed"}, 0.0),
    ],
)
def test_every_kind_of_feedback_maps_to_a_reward(judgement, reward):
    assert Feedback(request_id="r", **judgement).reward == reward


def test_feedback_needs_exactly_one_judgement():
    for judgement in ({}, {"score": 1.0, "thumbs": "up"}, {"rating": 6}):
        with pytest.raises(ValidationError):
            Feedback(request_id="r", **judgement)


def test_old_evidence_decays_with_the_half_life():
    served = Served("d", "m")
    state = fold(
        None, credit_feedback(Feedback(request_id="a", score=1.0, created_at=0), served), 100
    )
    later = Feedback(request_id="b", score=0.0, created_at=100)
    state = fold(state, credit_feedback(later, served), 100)
    assert (state.successes, state.failures) == (0.5, 1.0)


def test_contextual_statistics_are_folded_with_the_features():
    x = features("math", "hard", None)
    served = Served("d", "m", prior=0.25, context=tuple(x))
    state = fold(None, credit_feedback(Feedback(request_id="a", score=1.0), served), NEVER)
    design, response = arm_statistics(state.design, state.response)
    assert np.allclose(design, np.outer(x, x)) and np.allclose(response, 0.75 * x)
    # a feature vector of another width (an older layout) leaves the bandit statistics alone
    served = Served("d", "m", prior=0.25, context=(1.0, 0.0))
    state = fold(None, credit_feedback(Feedback(request_id="a", score=1.0), served), NEVER)
    assert state.design == [] and state.successes == 1.0


def test_implicit_outcomes_credit_failures_and_served_ones_wait_for_feedback():
    ids = [f"r{i}" for i in range(400)]
    sampled = [i for i in ids if length_sampled(i)]
    assert 30 <= len(sampled) <= 70  # about one answer in LENGTH_SAMPLE teaches its length
    (served,) = credit_outcome(outcome("ok", request_id=sampled[0]), LEARNING)
    assert (served.successes, served.failures) == (0.0, 0.0)  # quality waits for feedback
    assert (served.completions, served.completion_tokens) == (1.0, 1.0)  # its length counts
    unsampled = next(i for i in ids if not length_sampled(i))
    assert credit_outcome(outcome("ok", request_id=unsampled), LEARNING) == []
    (credit,) = credit_outcome(outcome("error"), LEARNING)
    assert (credit.model, credit.successes, credit.failures) == ("m", 0.0, 1.0)
    (slo,) = credit_outcome(outcome("ok", slo_missed=True), LEARNING)
    assert slo.failures == 0.5
    escalated = credit_outcome(
        outcome("ok", escalated_from=["cheap"], request_id=unsampled), LEARNING
    )
    assert [(c.model, c.failures) for c in escalated] == [("cheap", 1.0)]
    assert credit_outcome(outcome("error", cache_hit=True), LEARNING) == []


def test_price_per_million_tokens():
    assert Price(input_per_mtok=1.0, output_per_mtok=2.0).cost(1_000_000, 500_000) == 2.0
