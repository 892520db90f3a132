"""Endpoint selection inside a pool: least outstanding requests, round-robin on ties."""

from __future__ import annotations

import itertools
from collections import defaultdict


class LeastOutstanding:
    """Tracks in-flight requests per endpoint URL across every pool this process serves."""

    def __init__(self) -> None:
        self.outstanding: dict[str, int] = defaultdict(int)
        self._tiebreak = itertools.count()
        self._last_pick: dict[str, int] = {}

    def select_endpoint(self, urls: list[str], exclude: set[str] | None = None) -> str:
        """The endpoint with the fewest in-flight requests; avoids ``exclude`` while it can."""
        choices = [u for u in urls if u not in (exclude or set())] or urls
        url = min(choices, key=lambda u: (self.outstanding[u], self._last_pick.get(u, -1)))
        self._last_pick[url] = next(self._tiebreak)
        return url

    def acquire(self, url: str) -> None:
        self.outstanding[url] += 1

    def release(self, url: str) -> None:
        self.outstanding[url] -= 1
