"""The learner's outcome/feedback join: which arm a judgement credits, once, for its own
tenant, whichever of outcome and feedback comes first."""

from __future__ import annotations

from pipeline.envelope import Credit, Feedback, Outcome
from pipeline.learn.evidence import Served
from pipeline.learn.join import OutcomeFeedbackJoin, served_entry, served_from
from pipeline.policy import LearningConfig
from tests.unit.factories import make_outcome


def outcome(**fields) -> Outcome:
    """The outcome of request ``r1`` of tenant ``alpha``, served by arm (d, m)."""
    base = {"request_id": "r1", "tenant": "alpha", "prior": 0.7, "context": [0.5, 0.25]}
    return make_outcome(**{**base, **fields})


def vote(score: float, source: str = "tenant:alpha", tenant: str | None = "alpha") -> Feedback:
    return Feedback(request_id="r1", score=score, source=source, tenant=tenant, created_at=5.0)


def join() -> OutcomeFeedbackJoin:
    return OutcomeFeedbackJoin({}, {}, {}, LearningConfig())


def credits(verdicts: list) -> list[Credit]:
    return [v for v in verdicts if isinstance(v, Credit)]


def test_feedback_after_its_outcome_credits_the_serving_arm_once_per_source():
    j = join()
    assert j.first_reading(outcome(), 10)
    assert credits(j.outcome(outcome(), 10)) == []  # an ok answer: its quality waits for feedback
    credit = j.feedback(vote(1.0), now=0.0)
    assert isinstance(credit, Credit)
    assert (credit.decision, credit.model, credit.successes, credit.failures) == ("d", "m", 1, 0)
    assert (credit.prior, credit.context) == (0.7, [0.5, 0.25])
    assert j.feedback(vote(0.0), now=1.0) == "repeat"
    assert isinstance(j.feedback(vote(0.0, "evaluator", None), now=2.0), Credit)
    assert j.judged["r1"] == ["tenant:alpha", "evaluator"]


def test_feedback_before_its_outcome_waits_and_the_last_of_a_source_is_credited():
    j = join()
    assert j.feedback(vote(1.0), now=0.0) is None
    assert j.feedback(vote(0.25), now=1.0) is None
    assert j.feedback(vote(0.5, "tenant:beta", "beta"), now=2.0) is None
    assert len(j.pending["r1"]) == 2
    verdicts = list(j.outcome(outcome(), 10))
    assert "r1" not in j.pending
    assert "tenant_mismatch" in verdicts
    [credit] = credits(verdicts)
    assert credit.successes == 0.25


def test_waiting_feedback_is_forgotten_only_after_its_last_verdict_was_taken():
    j = join()
    j.feedback(vote(1.0), now=0.0)
    j.feedback(vote(0.5, "evaluator", None), now=1.0)
    verdicts = j.outcome(outcome(), 10)
    first = next(v for v in verdicts if isinstance(v, Credit))  # sent, then the learner crashes
    assert first.successes == 1.0 and "r1" in j.pending
    replayed = credits(j.outcome(outcome(), 10))  # the outcome read again after the restart
    assert [c.successes for c in replayed] == [0.5]  # the one sent is not credited twice
    assert "r1" not in j.pending


def test_a_cached_answer_credits_nothing():
    j = join()
    j.outcome(outcome(cache_hit=True), 3)
    assert j.feedback(vote(1.0), now=0.0) == "cached_answer"
    assert "r1" not in j.judged


def test_a_failed_outcome_credits_its_arm_at_once():
    j = join()
    [credit] = credits(j.outcome(outcome(status="error", error_type="upstream_error"), 1))
    assert (credit.model, credit.successes, credit.failures) == ("m", 0.0, 1.0)


def test_a_second_outcome_of_a_request_is_not_a_first_reading_but_the_same_record_is():
    j = join()
    j.outcome(outcome(), 10)
    assert j.first_reading(outcome(), 10)  # the same record, read again after a crash
    assert not j.first_reading(outcome(), 11)  # a redelivered outcome


def test_a_served_entry_names_its_arm():
    entry = served_entry(outcome(), 4)
    assert (entry["tenant"], entry["cache_hit"], entry["offset"]) == ("alpha", False, 4)
    assert served_from(entry) == Served("d", "m", 0.7, (0.5, 0.25))
