"""Selection strategies: pick one model among a decision's fitting candidates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.envelope import RouterState, router_state_key
from pipeline.policy import ModelCard, ThompsonConfig


@dataclass(frozen=True)
class Selection:
    model: ModelCard
    scores: dict[str, float]


def select_static(candidates: list[ModelCard]) -> Selection:
    """The first candidate: the policy's order of preference."""
    return Selection(candidates[0], {})


def select_thompson(
    decision: str,
    candidates: list[ModelCard],
    state: Mapping[str, RouterState],
    prior: ThompsonConfig,
    rng: np.random.Generator,
) -> Selection:
    """Thompson sampling: draw from each arm's Beta posterior, take the highest draw."""
    draws: dict[str, float] = {}
    for card in candidates:
        arm = state.get(router_state_key(decision, card.name))
        alpha = prior.prior_alpha + (arm.successes if arm else 0.0)
        beta = prior.prior_beta + (arm.failures if arm else 0.0)
        draws[card.name] = float(rng.beta(alpha, beta))
    best = max(candidates, key=lambda card: draws[card.name])
    return Selection(best, {name: round(v, 4) for name, v in draws.items()})
