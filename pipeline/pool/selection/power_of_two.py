"""Power of two choices: sample two endpoints at random, send to the less loaded one.

Load is :attr:`EndpointState.queue` (the larger of own in-flight and the scraped queue). Two
random probes avoid the herd that pure least-loaded causes when several dispatch instances act
on the same stale scrape (Mitzenmacher 2001). State: a seeded RNG per process.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pipeline.pool.selection.base import EndpointSelector, EndpointState, Placement, RequestShape


class PowerOfTwo(EndpointSelector):
    name = "power_of_two"

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        candidates = self.require(endpoints)
        probes = self._rng.sample(list(candidates), min(2, len(candidates)))
        return Placement(min(probes, key=lambda e: e.queue).url)
