"""predicted: m* = argmax_m q_m(x) - lambda * c_m with q_m(x) from a trained success predictor.

    q_m(x) = p_m(x) + r_m / (n0 + s_m + f_m)

``p_m(x)`` is the calibrated probability of a good answer of ``router.predictor.path``
(``wrp router train``, see ``pipeline/router/predictor.py``); ``r_m`` is the arm's decayed sum
of (reward - p_m(x)) over the feedback and failures of the requests it served (each decision
records its p_m(x) as its prior), ``s_m``/``f_m`` their weight and ``n0`` the policy's
``router.predictor.prior_weight``: feedback corrects the predictor's level for the model (a
model that does better or worse than predicted moves by that much, shrunk while the evidence
is thin) and keeps its per-request ranking. Where the predictor's held-out evidence says
it did not beat the best single model at this cost weight, p_m(x) is the model's mean on the
rows that compared them, so the choice is the best single candidate. A predictor trained on
embeddings of another width (another encoder) is not read. A candidate the predictor does not
know falls back to the kNN index when one is set (cold start), else to the card's prior E[q_m].
"""

from __future__ import annotations

from pipeline.router.predictor import load_predictor
from pipeline.router.strategies.base import Selection, SelectionContext, best, rounded
from pipeline.router.strategies.knn import neighbour_quality


def select(ctx: SelectionContext) -> Selection:
    router = ctx.policy.router
    quality = neighbour_quality(ctx)
    predictor = load_predictor(router.predictor.path) if router.predictor.path else None
    prior: dict[str, float] = {}
    if predictor is not None and ctx.embedding is not None and predictor.reads(ctx.embedding):
        if predictor.trusted(ctx.cost_weight):
            estimate = predictor.estimate(ctx.embedding, ctx.domain, ctx.complexity)
        else:
            estimate = predictor.fallback_rates()
        weight = router.predictor.prior_weight
        for card in ctx.candidates:
            if card.name in estimate:
                arm = ctx.arm(card)
                shift = arm.residual / (weight + arm.successes + arm.failures) if arm else 0.0
                prior[card.name] = estimate[card.name]
                quality[card.name] = min(max(estimate[card.name] + shift, 0.0), 1.0)
    scores = {card.name: ctx.utility(card, quality[card.name]) for card in ctx.candidates}
    choice = best(ctx.candidates, scores)
    return Selection(choice, choice, rounded(scores), prior=rounded(prior), estimates=scores)
