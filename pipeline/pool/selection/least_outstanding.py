"""Least outstanding requests: the endpoint with the fewest requests in flight from this process.

Ties go to the endpoint picked longest ago, so an idle pool is used round robin. State: the
selecting process's own in-flight counts, exact and instant; several dispatch instances each see
only their own share (they partition the load, and balance it only statistically).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pipeline.pool.selection.base import EndpointSelector, EndpointState, Placement, RequestShape


class LeastOutstanding(EndpointSelector):
    name = "least_outstanding"

    def __init__(self) -> None:
        self._clock = itertools.count()
        self._last_pick: dict[str, int] = {}

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        chosen = min(
            self.require(endpoints), key=lambda e: (e.in_flight, self._last_pick.get(e.url, -1))
        )
        self._last_pick[chosen.url] = next(self._clock)
        return Placement(chosen.url)
