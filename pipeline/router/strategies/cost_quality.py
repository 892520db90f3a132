"""cost_quality: m* = argmax_m  E[q_m] - lambda * c_m.

``E[q_m]`` is the arm's posterior mean (card prior for the domain plus feedback, see ``base``),
``c_m`` the predicted USD per 1,000 such requests and lambda the decision's (or the tenant's)
cost weight. Deterministic: it never explores by itself.
"""

from __future__ import annotations

from pipeline.router.strategies.base import Selection, SelectionContext, best, rounded


def select(ctx: SelectionContext) -> Selection:
    scores = {card.name: ctx.utility(card, ctx.mean(card)) for card in ctx.candidates}
    choice = best(ctx.candidates, scores)
    return Selection(choice, choice, rounded(scores), estimates=scores)
