"""Prefix affinity: consistent hashing of the request's prefix blocks, with bounded loads.

The key is the chained hash of the prompt's first ``affinity_tokens`` tokens (or of all its full
blocks if it is shorter; a prompt under one block hashes its request key), so requests sharing
that prefix (turns of a conversation, users of one long system prompt) land where their blocks
are cached. Each endpoint owns ``VIRTUAL_NODES`` points on a hash ring; the request walks the
ring clockwise from its key to the first endpoint whose in-flight count stays within
``ceil(load_factor * (total in flight + 1) / endpoints)`` (consistent hashing with bounded loads,
Mirrokni, Thorup & Zadimoghaddam 2018), so a hot prefix spills to its ring neighbours instead of
queueing behind itself.

State: the ring is a pure function of the endpoint URLs, so every dispatch instance agrees on
where a prefix lives without sharing anything; the load bound uses each instance's own in-flight
counts (exact, instant), so instances enforce it on their own share of the traffic.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

from pipeline.pool.blocks import BLOCK_SIZE
from pipeline.pool.selection.base import EndpointSelector, EndpointState, Placement, RequestShape

VIRTUAL_NODES = 64


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


@lru_cache(maxsize=64)
def _ring(urls: tuple[str, ...]) -> tuple[list[int], list[str]]:
    points = sorted(
        (_point(f"{url}#{i}".encode()), url) for url in urls for i in range(VIRTUAL_NODES)
    )
    return [p for p, _ in points], [u for _, u in points]


class PrefixAffinity(EndpointSelector):
    name = "prefix_affinity"

    def __init__(self, load_factor: float = 1.25, affinity_tokens: int = 1024) -> None:
        if load_factor < 1:
            raise ValueError("load_factor must be >= 1")
        self.load_factor = load_factor
        self.affinity_blocks = max(1, affinity_tokens // BLOCK_SIZE)

    def key_of(self, request: RequestShape) -> int:
        if request.blocks:
            return request.blocks[min(len(request.blocks), self.affinity_blocks) - 1]
        return _point(request.key.encode())

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        by_url = {e.url: e for e in self.require(endpoints)}
        points, owners = _ring(tuple(sorted(by_url)))
        total = sum(e.in_flight for e in by_url.values()) + 1
        bound = math.ceil(self.load_factor * total / len(by_url))
        start = bisect.bisect(points, self.key_of(request) % (1 << 64))
        for step in range(len(points)):
            url = owners[(start + step) % len(points)]
            if by_url[url].in_flight + 1 <= bound:
                return Placement(url)
        return Placement(owners[start % len(points)])  # unreachable: some endpoint is <= average
