"""Pure folding rules: what feedback and outcomes say about a (decision, model) arm.

Rewards are in [0, 1]: feedback's :attr:`Feedback.reward` (score, thumbs, 1-5 rating, verdict;
implicit feedback read from the user's next turn counts with its own weight);
a failed call, a cascade rung whose answer failed its check, and (weighted by the policy's
``slo_miss_penalty``) an SLO miss are failures. Evidence decays exponentially with the time
between observations, ``w = 2^(-(t - t_last) / half_life)``, so a model that drifts is followed.
The same rules serve the learner stage and ``wrp eval routing``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from pipeline.envelope import Credit, Feedback, Outcome, RouterState
from pipeline.policy import ImplicitConfig, LearningConfig
from pipeline.router.strategies.contextual import arm_statistics


@dataclass(frozen=True)
class Served:
    """Which arm served a request, its quality prior and its contextual features (remembered
    from its outcome, to credit later feedback)."""

    decision: str
    model: str
    prior: float = 0.5
    context: tuple[float, ...] = ()


def served_by(outcome: Outcome) -> Served:
    return Served(outcome.decision, outcome.model, outcome.prior, tuple(outcome.context))


def credit_feedback(
    feedback: Feedback, served: Served, implicit_weight: float = ImplicitConfig().weight
) -> Credit:
    """Reward r counts as r of a success and 1 - r of a failure; implicit feedback (read from
    the user's next turn) as w r and w (1 - r), w = ``router.learning.implicit.weight``."""
    reward = feedback.reward
    weight = 1.0 if feedback.implicit is None else implicit_weight
    return Credit(
        request_id=feedback.request_id,
        decision=served.decision,
        model=served.model,
        successes=weight * reward,
        failures=weight * (1.0 - reward),
        prior=served.prior,
        context=list(served.context),
        at=feedback.created_at,
    )


#: One served answer in this many (by a hash of its request id) teaches its arm's answer length:
#: a mean needs few samples, and every folded credit is a router-state record to publish.
LENGTH_SAMPLE = 8


def length_sampled(request_id: str) -> bool:
    return zlib.crc32(request_id.encode()) % LENGTH_SAMPLE == 0


def credit_outcome(outcome: Outcome, config: LearningConfig) -> list[Credit]:
    """Implicit evidence of an outcome: failed calls, failed cascade rungs, SLO misses, and (for
    one answer in :data:`LENGTH_SAMPLE`) the served answer's length, the router's expected answer
    tokens for the arm. Its quality waits for feedback."""

    def failure(model: str, weight: float, context: list[float]) -> Credit:
        return Credit(
            request_id=outcome.request_id,
            decision=outcome.decision,
            model=model,
            successes=0.0,
            failures=weight,
            prior=outcome.prior,
            context=context,
            at=outcome.completed_at,
        )

    if outcome.cache_hit:
        return []
    # a failed rung's prior is not on the outcome: its contextual statistics are left alone
    credits = [failure(model, 1.0, []) for model in outcome.escalated_from]
    if outcome.status != "ok":
        credits.append(failure(outcome.model, 1.0, outcome.context))
        return credits
    missed = config.slo_miss_penalty if outcome.slo_missed else 0.0
    served = failure(outcome.model, missed, outcome.context)
    if outcome.completion_tokens > 0 and length_sampled(outcome.request_id):
        served = served.model_copy(
            update={"completions": 1.0, "completion_tokens": float(outcome.completion_tokens)}
        )
    if served.failures > 0 or served.completions > 0:
        credits.append(served)
    return credits


def fold(current: RouterState | None, credit: Credit, half_life_s: float) -> RouterState:
    """The arm's evidence after ``credit``: the old evidence decayed to the credit's time, plus
    the credit (its reward minus the decision's prior as the residual; with features, its
    x x^T and (r - prior) x for the contextual bandit; a served answer's length)."""
    weight = 1.0
    if current is not None:
        weight = 2.0 ** (-max(credit.at - current.updated_at, 0.0) / half_life_s)
    successes = (current.successes * weight if current else 0.0) + credit.successes
    failures = (current.failures * weight if current else 0.0) + credit.failures
    design, response = arm_statistics(
        current.design if current else [], current.response if current else []
    )
    design, response = design * weight, response * weight
    evidence = credit.successes + credit.failures > 0
    if len(credit.context) == len(response) and evidence:
        x = np.array(credit.context)
        reward = credit.successes / max(credit.successes + credit.failures, 1e-9)
        design += np.outer(x, x)
        response += (reward - credit.prior) * x
    return RouterState(
        decision=credit.decision,
        model=credit.model,
        successes=round(successes, 6),
        failures=round(failures, 6),
        # an answer's length alone is no evidence about quality
        observations=(current.observations if current else 0) + int(evidence),
        version=(current.version if current else 0) + 1,
        design=[round(float(v), 6) for v in design.ravel()] if design.any() else [],
        response=[round(float(v), 6) for v in response] if design.any() else [],
        residual=round(
            (current.residual * weight if current else 0.0)
            + credit.successes
            - credit.prior * (credit.successes + credit.failures),
            6,
        ),
        completions=round(
            (current.completions * weight if current else 0.0) + credit.completions, 6
        ),
        completion_tokens=round(
            (current.completion_tokens * weight if current else 0.0) + credit.completion_tokens, 3
        ),
        updated_at=max(credit.at, current.updated_at if current else credit.at),
    )
