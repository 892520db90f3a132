"""knn: per-request quality from labelled neighbours, m* = argmax_m q_m(x) - lambda * c_m.

    q_m(x) = (sum_{i in N_k(x)} w_i * y_im  +  n0 * E[q_m]) / (sum_{i in N_k(x)} w_i  +  n0)

``N_k(x)`` are the k labelled requests most cosine-similar to the request's embedding x,
``w_i = max(cos(x, x_i), 0)``, ``y_im`` how well model m answered request i (0..1). The k
neighbours are chosen per model among the requests that have a label for it, so a sparse column
still gets k of them. ``E[q_m]`` the arm's posterior mean (card prior plus
feedback, see ``base``) and ``n0`` the policy's ``router.knn.prior_weight``. It needs no
online evidence, so it routes well from the first request (cold start); feedback still moves it
through ``E[q_m]``. The index is an ``.npz`` of ``embeddings`` (N x D, L2-normalised),
``labels`` (N x M, 0..1, NaN = unknown) and ``models`` (M names); without one the estimate is
``E[q_m]``.
"""

from __future__ import annotations

from pipeline.router.neighbours import load_index
from pipeline.router.strategies.base import Selection, SelectionContext, best, rounded


def neighbour_quality(ctx: SelectionContext) -> dict[str, float]:
    """q_m(x) of every candidate: the index's estimate where there is one, else E[q_m]."""
    config = ctx.policy.router.knn
    quality = {card.name: ctx.mean(card) for card in ctx.candidates}
    if config.index is not None and ctx.embedding is not None:
        index = load_index(config.index)
        quality = index.estimate(ctx.embedding, quality, config.k, config.prior_weight)
    return quality


def select(ctx: SelectionContext) -> Selection:
    quality = neighbour_quality(ctx)
    scores = {card.name: ctx.utility(card, quality[card.name]) for card in ctx.candidates}
    choice = best(ctx.candidates, scores)
    return Selection(choice, choice, rounded(scores), estimates=scores)
