"""cascade: cheapest capable model first; escalate while the answer fails a check.

    ladder = the max_models cheapest candidates by c_m (predicted USD per 1,000 requests)
    serve ladder[0]; if check(answer) fails, serve ladder[1]; ...; the last answer stands.

Dispatch climbs the ladder (:mod:`pipeline.pool.ladder`), escalating while an answer fails a
check (:mod:`pipeline.pool.cascade_checks`); each failed rung is an implicit failure credited to
its arm.

Expected cost: E[C] = sum_k C_k * prod_{j<k} P(rung j fails).
"""

from __future__ import annotations

from pipeline.router.strategies.base import Selection, SelectionContext, rounded


def select(ctx: SelectionContext) -> Selection:
    costs = {card.name: ctx.cost(card) for card in ctx.candidates}
    ladder = sorted(ctx.candidates, key=lambda card: costs[card.name])
    ladder = ladder[: ctx.decision.cascade.max_models]
    return Selection(ladder[0], ladder[0], rounded(costs), ladder=[c.name for c in ladder[1:]])
