"""Pure folding rules: what feedback and outcomes say about a (decision, model) arm."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.envelope import Credit, Feedback, Outcome, RouterState


@dataclass(frozen=True)
class Served:
    """Which arm served a request (remembered from its outcome, to credit later feedback)."""

    decision: str
    model: str


def credit_feedback(feedback: Feedback, served: Served) -> Credit:
    """Score s counts as s of a success and 1 - s of a failure."""
    return Credit(
        request_id=feedback.request_id,
        decision=served.decision,
        model=served.model,
        successes=feedback.score,
        failures=1.0 - feedback.score,
    )


def credit_outcome(outcome: Outcome) -> Credit | None:
    """A failed call is one failure of its arm; a served one waits for feedback."""
    if outcome.status == "ok":
        return None
    return Credit(
        request_id=outcome.request_id,
        decision=outcome.decision,
        model=outcome.model,
        successes=0.0,
        failures=1.0,
    )


def fold(current: RouterState | None, credit: Credit) -> RouterState:
    """The arm's evidence after ``credit``."""
    successes = (current.successes if current else 0.0) + credit.successes
    failures = (current.failures if current else 0.0) + credit.failures
    observations = (current.observations if current else 0) + 1
    return RouterState(
        decision=credit.decision,
        model=credit.model,
        successes=round(successes, 6),
        failures=round(failures, 6),
        observations=observations,
    )
