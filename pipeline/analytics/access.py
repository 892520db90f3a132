"""Reaching the analytics store from a CLI: through the running analytics stage, else directly."""

from __future__ import annotations

import httpx

from pipeline.settings import Settings


class AnalyticsUnavailable(RuntimeError):
    pass


def query_analytics(settings: Settings, name: str, params: dict[str, str]) -> dict:
    """Run a named query on the analytics stage's port; open the store only when none runs
    (an embedded chdb directory can be opened by one process at a time)."""
    url = f"http://127.0.0.1:{settings.stage_port('analytics')}/queries/{name}"
    try:
        reply = httpx.get(url, params=params, timeout=30)
    except httpx.TransportError:
        from pipeline.analytics.store import AnalyticsStore

        store = AnalyticsStore.from_settings(settings)
        try:
            return store.query(name, params)
        finally:
            store.close()
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise AnalyticsUnavailable(f"analytics query {name!r}: {detail}")
    return reply.json()
