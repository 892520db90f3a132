"""Per-session memory a stage instance keeps for the sessions of its partitions.

Requests are keyed by session, so one session's turns reach one stage instance in order; the
memory is local to that instance (lost on restart or rebalance, when a session starts cold
again). Entries expire after ``ttl_s`` and the oldest are evicted beyond ``capacity``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SessionMemory(Generic[V]):
    def __init__(self, ttl_s: float, capacity: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, session: Hashable, now: float | None = None) -> V | None:
        """The live value for ``session``, or None when unseen or expired."""
        entry = self._entries.get(session)
        if entry is None:
            return None
        seen, value = entry
        if (time.monotonic() if now is None else now) - seen > self.ttl_s:
            del self._entries[session]
            return None
        return value

    def put(self, session: Hashable, value: V, now: float | None = None) -> None:
        self._entries[session] = (time.monotonic() if now is None else now, value)
        self._entries.move_to_end(session)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
