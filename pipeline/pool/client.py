"""Calling an OpenAI-compatible endpoint: timeout, retry on another endpoint, clear errors."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.pool.endpoints import LeastOutstanding


@dataclass(frozen=True)
class PoolCall:
    """How a call went: the answer or the error, where, and how long it took."""

    endpoint: str
    attempts: int
    latency_ms: float
    response: dict[str, Any] | None
    error_type: str | None = None
    error: str | None = None


class PoolHTTPError(Exception):
    def __init__(self, error_type: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


async def post_chat(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """POST ``body`` to ``url``/v1/chat/completions; raises :class:`PoolHTTPError`."""
    try:
        reply = await client.post(f"{url}/v1/chat/completions", json=body, timeout=timeout_s)
    except httpx.TimeoutException:
        raise PoolHTTPError(
            "pool_timeout", f"{url} did not answer within {timeout_s}s", True
        ) from None
    except httpx.TransportError as exc:
        raise PoolHTTPError("pool_unreachable", f"{url} unreachable: {exc!r}", True) from None
    if reply.status_code >= 400:
        try:
            detail = reply.json().get("error", {}).get("message") or reply.text
        except ValueError:
            detail = reply.text
        retryable = reply.status_code >= 500 or reply.status_code == 429
        raise PoolHTTPError(
            "pool_error" if retryable else "pool_rejected",
            f"{url} answered {reply.status_code}: {detail[:500]}",
            retryable,
        )
    try:
        return reply.json()
    except ValueError:
        raise PoolHTTPError("pool_error", f"{url} answered with invalid JSON", True) from None


async def call_pool(
    client: httpx.AsyncClient,
    balancer: LeastOutstanding,
    urls: list[str],
    body: dict[str, Any],
    timeout_s: float,
    retries: int,
) -> PoolCall:
    """Call the least-loaded endpoint; on a retryable failure try again (another endpoint)."""
    tried: set[str] = set()
    started = time.perf_counter()
    url, attempts = "", 0
    error: PoolHTTPError | None = None
    while attempts <= retries:
        attempts += 1
        url = balancer.select_endpoint(urls, exclude=tried)
        tried.add(url)
        balancer.acquire(url)
        try:
            response = await post_chat(client, url, body, timeout_s)
            return PoolCall(url, attempts, (time.perf_counter() - started) * 1000, response)
        except PoolHTTPError as exc:
            error = exc
            if not exc.retryable:
                break
        finally:
            balancer.release(url)
    assert error is not None
    elapsed_ms = (time.perf_counter() - started) * 1000
    return PoolCall(url, attempts, elapsed_ms, None, error.error_type, str(error))
