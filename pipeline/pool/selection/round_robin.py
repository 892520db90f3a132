"""Round robin: each endpoint in turn, blind to load. State: one counter per process."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pipeline.pool.selection.base import EndpointSelector, EndpointState, Placement, RequestShape


class RoundRobin(EndpointSelector):
    name = "round_robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        candidates = sorted(self.require(endpoints), key=lambda e: e.url)
        return Placement(candidates[next(self._turn) % len(candidates)].url)
