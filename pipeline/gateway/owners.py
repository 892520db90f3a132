"""Which tenant a request belongs to and how it ended, so feedback is accepted only from its
owner and only for an answer a model gave: the requests this gateway published recently, else
the analytics store (asked with the caller's own key, so it can only ever find the caller's
rows)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from pipeline.analytics.access import ask_analytics
from pipeline.analytics.readers import operator_token
from pipeline.settings import Settings

#: Request ids remembered per gateway process (about 100 bytes each).
REMEMBERED = 100_000


@dataclass
class Owned:
    tenant: str
    status: str | None = None  # ok, blocked, error; None while it is being answered


class RequestOwners:
    def __init__(self, settings: Settings, capacity: int = REMEMBERED) -> None:
        self.settings = settings
        self.capacity = capacity
        self._recent: OrderedDict[str, Owned] = OrderedDict()

    def remember(self, request_id: str, tenant: str) -> None:
        self._recent[request_id] = Owned(tenant)
        self._recent.move_to_end(request_id)
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)

    def answered(self, request_id: str, status: str) -> None:
        if (owned := self._recent.get(request_id)) is not None:
            owned.status = status

    async def status(self, request_id: str, tenant: str, key: str | None) -> str | None:
        """How ``tenant``'s request ``request_id`` ended (``pending`` while it is being
        answered); None when it is not the caller's (``key``: its API key, None on an open
        gateway). Raises AnalyticsUnavailable when that cannot be told now."""
        known = self._recent.get(request_id)
        if known is not None:
            return (known.status or "pending") if known.tenant == tenant else None
        token = key or operator_token(self.settings)
        found = await ask_analytics(
            self.settings, "request", {"request_id": request_id, "tenant": tenant}, token
        )
        if not found["rows"]:
            return None
        return found["rows"][0][found["columns"].index("status")]
