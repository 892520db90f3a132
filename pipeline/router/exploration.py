"""Bounds on exploration per decision: a floor and a ceiling on the share of explored choices.

A choice explores when the strategy picked a model other than its best estimate (Thompson
draws, LinUCB optimism). Each router instance keeps an exponential moving average of that share
per decision (window ~``WINDOW`` choices): below the floor it forces a uniformly random other
candidate; at or above the ceiling it replaces an exploring choice by the best estimate. A
tenant with ``explore: false`` always gets the best estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.policy import Exploration, ModelCard

WINDOW = 50


@dataclass
class ExplorationGovernor:
    rates: dict[str, float] = field(default_factory=dict)

    def rate(self, decision: str) -> float:
        return self.rates.get(decision, 0.0)

    def govern(
        self,
        decision: str,
        choice: ModelCard,
        greedy: ModelCard,
        candidates: list[ModelCard],
        bounds: Exploration,
        frozen: bool,
        rng: np.random.Generator,
    ) -> ModelCard:
        """The model to serve, within the decision's bounds."""
        rate = self.rate(decision)
        others = [card for card in candidates if card.name != greedy.name]
        if frozen or not others or (choice.name != greedy.name and rate >= bounds.ceiling):
            choice = greedy
        elif choice.name == greedy.name and rate < bounds.floor:
            choice = others[int(rng.integers(len(others)))]
        explored = choice.name != greedy.name
        self.rates[decision] = rate + (float(explored) - rate) / WINDOW
        return choice
