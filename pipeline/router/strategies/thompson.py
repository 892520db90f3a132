"""thompson: draw theta_m ~ Beta(alpha_m, beta_m) per arm, m* = argmax_m theta_m - lambda * c_m.

The posterior is the card's prior plus the learner's decayed evidence (see ``base``). The
greedy choice (for exploration accounting) uses the posterior means instead of draws.
"""

from __future__ import annotations

from pipeline.router.strategies.base import Selection, SelectionContext, best, rounded


def select(ctx: SelectionContext) -> Selection:
    draws = {
        card.name: ctx.utility(card, float(ctx.rng.beta(*ctx.posterior(card))))
        for card in ctx.candidates
    }
    means = {card.name: ctx.utility(card, ctx.mean(card)) for card in ctx.candidates}
    return Selection(
        best(ctx.candidates, draws), best(ctx.candidates, means), rounded(draws), estimates=means
    )
