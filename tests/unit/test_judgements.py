"""Which feedback the learner credits: the request's own tenant, once per (request, source)."""

from pipeline.envelope import Feedback
from pipeline.learn.judgements import ignore_reason, wait_for_outcome


def vote(score: float, source: str = "tenant:alpha", tenant: str | None = "alpha") -> Feedback:
    return Feedback(request_id="r1", score=score, source=source, tenant=tenant)


def test_only_the_requests_own_tenant_or_a_trusted_producer_is_credited():
    assert ignore_reason(vote(1.0), "alpha", False, []) is None
    assert ignore_reason(vote(1.0, "tenant:beta", "beta"), "alpha", False, []) == (
        "tenant_mismatch"
    )
    assert ignore_reason(vote(1.0, "evaluator", None), "alpha", False, []) is None


def test_a_source_is_credited_once_and_cached_answers_credit_nothing():
    assert ignore_reason(vote(0.0), "alpha", False, ["tenant:alpha"]) == "repeat"
    assert ignore_reason(vote(0.0, "evaluator", None), "alpha", False, ["tenant:alpha"]) is None
    assert ignore_reason(vote(1.0), "alpha", True, []) == "cached_answer"


def test_a_later_judgement_replaces_a_waiting_one_of_the_same_source():
    waiting = wait_for_outcome([], vote(1.0), now=0.0)
    waiting = wait_for_outcome(waiting, vote(0.0, "evaluator", None), now=1.0)
    waiting = wait_for_outcome(waiting, vote(0.25), now=2.0)
    scores = sorted(Feedback.model_validate_json(w["feedback"]).score for w in waiting)
    assert scores == [0.0, 0.25]
