"""Reaching the analytics from a client: through the analytics stage's HTTP port (which owns an
embedded chdb directory), with a bearer token (:mod:`pipeline.analytics.readers`)."""

from __future__ import annotations

import httpx

from pipeline.analytics.readers import operator_token
from pipeline.settings import Settings


class AnalyticsUnavailable(RuntimeError):
    pass


def analytics_url(settings: Settings) -> str:
    return settings.analytics_url or f"http://127.0.0.1:{settings.stage_port('analytics')}"


def _answer(name: str, reply: httpx.Response) -> dict:
    if reply.status_code != 200:
        try:
            detail = reply.json().get("detail", reply.text)
        except ValueError:
            detail = reply.text
        raise AnalyticsUnavailable(f"analytics query {name!r}: {detail}")
    return reply.json()


def _headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def query_analytics(settings: Settings, name: str, params: dict[str, str]) -> dict:
    """Run a named query as the operator; open the store only when no analytics stage serves
    it (an embedded chdb directory can be opened by one process at a time)."""
    url = f"{analytics_url(settings)}/queries/{name}"
    try:
        reply = httpx.get(
            url, params=params, headers=_headers(operator_token(settings)), timeout=30
        )
    except httpx.TransportError:
        from pipeline.analytics.store import AnalyticsStore

        store = AnalyticsStore.from_settings(settings)
        try:
            return store.query(name, params)
        finally:
            store.close()
    return _answer(name, reply)


async def ask_analytics(
    settings: Settings, name: str, params: dict[str, str], token: str | None
) -> dict:
    """Run a named query over HTTP only (the gateway's way: it never opens the store)."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(
                f"{analytics_url(settings)}/queries/{name}", params=params, headers=_headers(token)
            )
    except httpx.HTTPError as exc:
        raise AnalyticsUnavailable(f"analytics at {analytics_url(settings)}: {exc!r}") from None
    return _answer(name, reply)
