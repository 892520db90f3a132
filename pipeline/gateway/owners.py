"""Which tenant a request belongs to, so feedback is accepted only from its owner: the requests
this gateway published recently, else the analytics store (asked with the caller's own key, so
it can only ever find the caller's rows)."""

from __future__ import annotations

from collections import OrderedDict

from pipeline.analytics.access import ask_analytics
from pipeline.analytics.readers import operator_token
from pipeline.settings import Settings

#: Request ids remembered per gateway process (about 100 bytes each).
REMEMBERED = 100_000


class RequestOwners:
    def __init__(self, settings: Settings, capacity: int = REMEMBERED) -> None:
        self.settings = settings
        self.capacity = capacity
        self._recent: OrderedDict[str, str] = OrderedDict()

    def remember(self, request_id: str, tenant: str) -> None:
        self._recent[request_id] = tenant
        self._recent.move_to_end(request_id)
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)

    async def owns(self, request_id: str, tenant: str, key: str | None) -> bool:
        """Whether ``tenant`` (the caller, holding API ``key``; None on an open gateway) owns
        ``request_id``. Raises AnalyticsUnavailable when that cannot be told now."""
        known = self._recent.get(request_id)
        if known is not None:
            return known == tenant
        token = key or operator_token(self.settings)
        found = await ask_analytics(
            self.settings, "request", {"request_id": request_id, "tenant": tenant}, token
        )
        return bool(found["rows"])
