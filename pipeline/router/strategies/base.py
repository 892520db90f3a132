"""What every selection strategy sees and returns, and the estimates strategies share.

Quality is the probability of a good answer. Each (decision, model) arm's posterior is
``Beta(q*n + s, (1-q)*n + f)``: ``q`` is the model card's quality prior for the request's
domain, ``n`` the policy's ``router.thompson.prior_strength``, and ``s``/``f`` the decayed
successes and failures the learner folded in. Cost is the predicted USD of 1,000 requests of
this shape (prompt tokens + expected answer tokens at the card's prices), so the cost weight
lambda reads "quality points per USD per 1,000 requests". The expected answer tokens are the
arm's learnt mean completion length (the learner folds in one served answer's length in eight)
once it has one, else the signals' prior for the domain; both capped by max_tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.envelope import RouterState, router_state_key
from pipeline.policy import DecisionSpec, ModelCard, Policy


@dataclass
class SelectionContext:
    policy: Policy
    decision: DecisionSpec
    candidates: list[ModelCard]
    domain: str
    complexity: str
    embedding: np.ndarray | None
    prompt_tokens: int
    answer_tokens: int  # the signals' prior, capped by the answer budget
    answer_budget: int
    cost_weight: float
    arms: Mapping[str, RouterState]
    rng: np.random.Generator

    def arm(self, card: ModelCard) -> RouterState | None:
        return self.arms.get(router_state_key(self.decision.name, card.name))

    def prior(self, card: ModelCard) -> float:
        return card.prior_quality(self.domain)

    def expected_answer(self, card: ModelCard) -> float:
        """Answer tokens expected from ``card``: its arm's learnt mean, else the prior."""
        arm = self.arm(card)
        learnt = arm.answer_tokens() if arm else None
        return self.answer_tokens if learnt is None else min(learnt, self.answer_budget)

    def cost(self, card: ModelCard) -> float:
        """Predicted USD of 1,000 requests like this one on ``card``."""
        return 1000 * card.price.cost(self.prompt_tokens, self.expected_answer(card))

    def posterior(self, card: ModelCard) -> tuple[float, float]:
        """Beta(alpha, beta) of the arm: the card's prior plus the learner's evidence."""
        strength = self.policy.router.thompson.prior_strength
        q, arm = self.prior(card), self.arm(card)
        alpha = q * strength + (arm.successes if arm else 0.0)
        beta = (1 - q) * strength + (arm.failures if arm else 0.0)
        return max(alpha, 1e-6), max(beta, 1e-6)

    def mean(self, card: ModelCard) -> float:
        alpha, beta = self.posterior(card)
        return alpha / (alpha + beta)

    def utility(self, card: ModelCard, quality: float) -> float:
        """quality - lambda * cost."""
        return quality - self.cost_weight * self.cost(card)


@dataclass(frozen=True)
class Selection:
    model: ModelCard
    #: the candidate with the best estimate (no exploration); differs from ``model`` on explore
    greedy: ModelCard
    scores: dict[str, float]
    ladder: list[str] = field(default_factory=list)
    context: list[float] = field(default_factory=list)
    #: the strategy's own per-request estimate per candidate before feedback corrects it, when
    #: it has one: the served model's becomes the decision's prior, what feedback is measured
    #: against
    prior: dict[str, float] = field(default_factory=dict)
    #: each candidate's utility by the strategy's best estimate, without exploration (no
    #: Thompson draw, no confidence bonus), when it has one: what sticky sessions weigh a
    #: switch on
    estimates: dict[str, float] = field(default_factory=dict)


def best(candidates: list[ModelCard], scores: dict[str, float]) -> ModelCard:
    """The highest-scoring candidate; the policy's order breaks ties."""
    return max(candidates, key=lambda card: scores[card.name])


def rounded(scores: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 4) for name, value in scores.items()}
