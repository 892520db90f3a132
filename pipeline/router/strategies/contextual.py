"""contextual: LinUCB (disjoint arms) on the request's features, learning each model's residual
over its card prior.

    x       = [onehot(domain) | onehot(complexity) | 1 | P e / |P e|]      (d = 14 + 3 + 1 + 8)
    A_m     = ridge * I + sum_t x_t x_t^T        b_m = sum_t (r_t - q_m) x_t      (decayed)
    theta_m = A_m^-1 b_m
    score_m = q_m + theta_m . x + alpha * sqrt(x^T A_m^-1 x) - lambda * c_m

``q_m`` is the card's quality prior for the domain, ``P`` a fixed seeded Gaussian projection of
the embedding to 8 dimensions (the same in every router instance), alpha and ridge come from
``router.contextual``. The learner folds ``x x^T`` and ``(r - q) x`` into each arm's
router-state (``design``/``response``) with the same exponential decay as the Beta counts; the
greedy choice drops the alpha term.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from pipeline.router.strategies.base import Selection, SelectionContext, best, rounded
from pipeline.vocabulary import COMPLEXITY, DOMAINS

PROJECTED = 8
DIMENSIONS = len(DOMAINS) + len(COMPLEXITY) + 1 + PROJECTED


@cache
def _projection(width: int) -> np.ndarray:
    return np.random.default_rng(20260301).standard_normal((width, PROJECTED)).astype(np.float32)


def features(domain: str, complexity: str, embedding: np.ndarray | None) -> np.ndarray:
    x = np.zeros(DIMENSIONS, dtype=np.float64)
    if domain in DOMAINS:
        x[DOMAINS.index(domain)] = 1.0
    if complexity in COMPLEXITY:
        x[len(DOMAINS) + COMPLEXITY.index(complexity)] = 1.0
    x[len(DOMAINS) + len(COMPLEXITY)] = 1.0
    if embedding is not None:
        projected = embedding.astype(np.float32) @ _projection(len(embedding))
        norm = float(np.linalg.norm(projected))
        if norm > 0:
            x[-PROJECTED:] = projected / norm
    return x


def arm_statistics(design: list[float], response: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """An arm's decayed sums (zeros before any evidence, or if the feature layout changed)."""
    if len(design) != DIMENSIONS * DIMENSIONS or len(response) != DIMENSIONS:
        return np.zeros((DIMENSIONS, DIMENSIONS)), np.zeros(DIMENSIONS)
    return np.array(design).reshape(DIMENSIONS, DIMENSIONS), np.array(response)


def select(ctx: SelectionContext) -> Selection:
    config = ctx.policy.router.contextual
    x = features(ctx.domain, ctx.complexity, ctx.embedding)
    optimistic: dict[str, float] = {}
    expected: dict[str, float] = {}
    for card in ctx.candidates:
        arm = ctx.arm(card)
        design, response = (
            arm_statistics(arm.design, arm.response) if arm else arm_statistics([], [])
        )
        a = design + config.ridge * np.eye(DIMENSIONS)
        theta, a_inv_x = np.linalg.solve(a, np.column_stack([response, x])).T
        width = config.alpha * float(np.sqrt(x @ a_inv_x))
        expected[card.name] = ctx.utility(card, ctx.prior(card) + float(theta @ x))
        optimistic[card.name] = expected[card.name] + width
    return Selection(
        best(ctx.candidates, optimistic),
        best(ctx.candidates, expected),
        rounded(optimistic),
        context=[round(float(v), 5) for v in x],
        estimates=expected,
    )
