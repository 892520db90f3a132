"""The pool-aware candidate filter: drop candidates whose pool cannot serve the request well
right now.

Not a strategy: applied to the candidates before every strategy chooses (``router.pool_aware``),
so any strategy becomes pool-aware:

    saturation(pool) = sum in_flight / sum capacity        over the pool's endpoints that report one
    ttft(pool)       = min TTFT EWMA                         over the pool's endpoints
    skip m  if  every endpoint of pool_m has an open circuit
            or  saturation(pool_m) >= saturation_limit  or  ttft(pool_m) > TTFT budget

The budget is the request's (``x-ttft-budget-ms``-style field ``ttft_budget_ms``) or the
policy's. If every candidate would be skipped, the one on the least saturated pool is kept, so a
busy fleet degrades to queueing instead of refusing. Pool state comes from ``wrp.pool-state``
(published by dispatch); a pool nobody has reported on is assumed healthy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.envelope import PoolState
from pipeline.policy import ModelCard, PoolAwareConfig

#: A pool-state row this old is from a dispatch instance that is gone.
STALE_S = 30.0


@dataclass(frozen=True)
class PoolLoad:
    saturation: float
    ttft_ms: float | None
    down: bool  # every reported endpoint has an open circuit


def pool_load(pool: str, states: Mapping[str, PoolState]) -> PoolLoad:
    """A pool's load from its endpoints' fresh states (every dispatch instance publishes its
    own share each second; rows older than ``STALE_S`` are ignored)."""
    oldest = time.time() - STALE_S
    mine = [s for s in states.values() if s.pool == pool and s.updated_at >= oldest]
    capacity = sum(s.capacity or 0 for s in mine)
    in_flight = sum(s.in_flight for s in mine if s.capacity)
    ttfts = [s.ttft_ms_ewma for s in mine if s.ttft_ms_ewma is not None]
    latest: dict[str, PoolState] = {}
    for s in sorted(mine, key=lambda s: s.updated_at):
        latest[s.endpoint] = s
    return PoolLoad(
        in_flight / capacity if capacity else 0.0,
        min(ttfts) if ttfts else None,
        bool(latest) and all(s.circuit == "open" for s in latest.values()),
    )


def usable(
    candidates: list[ModelCard],
    states: Mapping[str, PoolState],
    config: PoolAwareConfig,
    ttft_budget_ms: float | None,
) -> tuple[list[ModelCard], dict[str, str]]:
    """The candidates to choose among, and why each other one was skipped."""
    if not config.enabled or not states:
        return candidates, {}
    budget = ttft_budget_ms or config.ttft_budget_ms
    loads = {card.pool: pool_load(card.pool, states) for card in candidates}
    skipped: dict[str, str] = {}
    for card in candidates:
        load = loads[card.pool]
        if load.down:
            skipped[card.name] = f"pool {card.pool} down (every endpoint's circuit is open)"
        elif load.saturation >= config.saturation:
            skipped[card.name] = f"pool {card.pool} saturated ({load.saturation:.0%} in flight)"
        elif budget is not None and load.ttft_ms is not None and load.ttft_ms > budget:
            skipped[card.name] = (
                f"pool {card.pool} TTFT {load.ttft_ms:.0f} ms > budget {budget:.0f} ms"
            )
    kept = [card for card in candidates if card.name not in skipped]
    if not kept:
        least = min(
            candidates, key=lambda card: (loads[card.pool].down, loads[card.pool].saturation)
        )
        skipped.pop(least.name)
        kept = [least]
    return kept, skipped
