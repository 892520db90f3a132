"""Which feedback counts as evidence: a judgement of the request's own tenant, one per
(request, source), of a request a model actually served.

The learner folds the first judgement per (request, source) and ignores later ones (the
analytics store keeps the last, the user's final word); while the request's outcome has not
arrived yet, a later judgement replaces a waiting one of the same source. Everything ignored is
counted by reason (``wrp_learner_feedback_ignored``).
"""

from __future__ import annotations

from typing import Literal

from pipeline.envelope import Feedback

IgnoreReason = Literal["tenant_mismatch", "repeat", "cached_answer"]


def ignore_reason(
    feedback: Feedback, served_tenant: str, cache_hit: bool, judged_sources: list[str]
) -> IgnoreReason | None:
    """Why ``feedback`` on a served request must not be credited, or None when it must.

    Feedback without a tenant comes from a trusted producer on the topic (an evaluator); the
    gateway always sets the caller's tenant."""
    if feedback.tenant is not None and feedback.tenant != served_tenant:
        return "tenant_mismatch"
    if feedback.source in judged_sources:
        return "repeat"
    if cache_hit:
        return "cached_answer"
    return None


def wait_for_outcome(waiting: list[dict], feedback: Feedback, now: float) -> list[dict]:
    """The judgements waiting for a request's outcome once ``feedback`` arrived: it replaces a
    waiting one of the same source (the last wins)."""
    kept = [
        w for w in waiting if Feedback.model_validate_json(w["feedback"]).source != feedback.source
    ]
    return [*kept, {"feedback": feedback.model_dump_json(), "at": now}]
