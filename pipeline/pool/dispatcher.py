"""Calling a pool: placement, the deadline, retries with backoff, disaggregated prefill/decode,
and each request's share of GPU cost and energy.

One attempt = place (wait for a free slot, skip open circuits) -> call for the chat completion
(streamed to ``relay`` when the client streams, else one plain call). A retryable failure is
retried on another endpoint after ``backoff_ms * 2**(attempt-1)`` (jittered, +-50%) while
attempts and the deadline allow; a non-retryable one ends the call, and so does any failure once
part of the answer was relayed (the client has seen it: another endpoint would start over).
Each endpoint is called with the credentials its pool's ``auth`` names
(:mod:`pipeline.pool.credentials`), read at sync and again after a 401/403 or while missing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from pipeline.envelope import Attempt
from pipeline.policy import Pool
from pipeline.pool.client import ChatReply, PoolHTTPError, Relay, chat
from pipeline.pool.credentials import Credentials, resolve_headers
from pipeline.pool.endpoints import PoolEndpoints
from pipeline.pool.gpu import GPUS
from pipeline.pool.selection import NoEndpoint, Placement, RequestShape

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolCall:
    """How a call went: the answer or the error, where, and what it took."""

    endpoint: str
    attempts: int
    latency_ms: float
    response: dict[str, Any] | None
    ttft_ms: float | None = None
    error_type: str | None = None
    error: str | None = None
    gpu_cost_usd: float = 0.0
    energy_j: float = 0.0
    log: tuple[Attempt, ...] = ()
    relayed: bool = False  # part of the answer reached the client through the relay


def footprint(pool: Pool, latency_s: float, batch: float) -> tuple[float, float]:
    """(GPU cost in USD, energy in J) of one request that held a batch slot for ``latency_s``
    among ``batch`` concurrent sequences, on the pool's GPU profile."""
    gpu = GPUS[pool.gpu]
    share = pool.gpus_per_endpoint * latency_s / max(1.0, batch)
    return gpu.usd_per_hour * share / 3600, gpu.power_w(max(1.0, batch)) * share


class Dispatcher:
    """Calls pools for one dispatch process; owns every pool's :class:`PoolEndpoints`."""

    def __init__(self, session: aiohttp.ClientSession, rng: random.Random | None = None) -> None:
        self.session = session
        self.pools: dict[str, PoolEndpoints] = {}
        self.rng = rng or random.Random()

    def sync(self, pools: list[Pool]) -> None:
        """Adopt the pools of a (re)loaded policy (unchanged pools keep their books) and read
        every endpoint's credentials again (a rotated secret file is picked up here)."""
        self.pools = {
            p.name: self.pools[p.name]
            if p.name in self.pools and self.pools[p.name].pool == p
            else PoolEndpoints(p)
            for p in pools
        }
        for endpoints in self.pools.values():
            for url in endpoints.books:
                credentials = self._read_credentials(endpoints, url)
                if credentials.missing:
                    log.error(
                        "pool %s endpoint %s: missing secret(s): %s; its calls fail with "
                        "pool_misconfigured",
                        endpoints.pool.name,
                        url,
                        "; ".join(credentials.missing),
                    )

    @staticmethod
    def _read_credentials(endpoints: PoolEndpoints, url: str) -> Credentials:
        book = endpoints.books[url]
        book.credentials = resolve_headers(endpoints.pool.endpoint_auth(book.spec))
        return book.credentials

    def _headers(self, endpoints: PoolEndpoints, url: str) -> dict[str, str]:
        """``url``'s credentials, or :class:`PoolHTTPError` saying they are missing
        (retryable: another endpoint of the pool may have its own). Missing ones are looked
        for again first: a secret file may have been mounted since."""
        credentials = endpoints.books[url].credentials
        if credentials.missing:
            credentials = self._read_credentials(endpoints, url)
        if credentials.missing:
            # the names stay in the operator's log (``sync`` logs them): a client sees none,
            # and a secret written where its name belongs must not travel in an error reply
            raise PoolHTTPError(
                "pool_misconfigured",
                f"pool {endpoints.pool.name} cannot be called: its credentials are not "
                "configured (the operator's log names what is missing)",
                True,
            )
        return credentials.headers

    @property
    def full(self) -> bool:
        return any(p.full for p in self.pools.values())

    async def _attempt(
        self,
        endpoints: PoolEndpoints,
        placement: Placement,
        body: dict[str, Any],
        timeout_s: float,
        relay: Relay | None,
    ) -> ChatReply:
        if placement.prefill is None:
            headers = self._headers(endpoints, placement.endpoint)
            return await chat(self.session, placement.endpoint, body, timeout_s, relay, headers)
        started = time.perf_counter()
        prefill_body = {**body, "max_tokens": 1, "kv_transfer_params": {"do_remote_decode": True}}
        try:
            headers = self._headers(endpoints, placement.endpoint)
            prefilled = await chat(
                self.session,
                placement.prefill,
                prefill_body,
                timeout_s,
                headers=self._headers(endpoints, placement.prefill),
            )
        except PoolHTTPError:
            await endpoints.release(placement.prefill, ok=False)
            raise
        await endpoints.release(placement.prefill, ok=True, latency_ms=prefilled.latency_ms)
        params = prefilled.response.get("kv_transfer_params") or {"do_remote_prefill": True}
        remaining = timeout_s - (time.perf_counter() - started)
        decode_body = {**body, "kv_transfer_params": params}
        decoded = await chat(
            self.session, placement.endpoint, decode_body, remaining, relay, headers
        )
        ttft = None if decoded.ttft_ms is None else prefilled.latency_ms + decoded.ttft_ms
        return ChatReply(decoded.response, ttft, (time.perf_counter() - started) * 1000)

    async def call(
        self,
        pool: Pool,
        body: dict[str, Any],
        shape: RequestShape,
        deadline: float | None,
        relay: Relay | None = None,
    ) -> PoolCall:
        """Serve ``body`` from ``pool`` before ``deadline`` (epoch seconds), retrying; streamed
        to ``relay`` when given."""
        endpoints = self.pools[pool.name]
        started = time.perf_counter()
        tried: list[str] = []
        log: list[Attempt] = []

        def record(endpoint: str, started_at: float, error_type: str | None, ttft: float | None):
            log.append(
                Attempt(
                    model=str(body.get("model", "")),
                    pool=pool.name,
                    endpoint=endpoint,
                    status="error" if error_type else "ok",
                    error_type=error_type,
                    started_at=started_at,
                    latency_ms=round((time.time() - started_at) * 1000, 3),
                    ttft_ms=None if ttft is None else round(ttft, 3),
                )
            )

        relayed = False

        async def relaying(chunks: list[dict[str, Any]]) -> None:
            nonlocal relayed
            relayed = True
            assert relay is not None
            await relay(chunks)

        error = PoolHTTPError("pool_unavailable", f"pool {pool.name} was not called", True)
        for attempt in range(1, pool.retries + 2):
            budget = pool.timeout_s
            if deadline is not None:
                budget = min(budget, deadline - time.time())
                if budget <= 0:
                    error = PoolHTTPError(
                        "deadline_exceeded", "the request's deadline passed during dispatch", False
                    )
                    break
            try:
                placement = await endpoints.place(shape, tried, budget)
            except NoEndpoint as exc:
                error = PoolHTTPError("pool_unavailable", str(exc), True)
                break
            tried.append(placement.endpoint)
            attempt_started = time.perf_counter()
            attempt_at = time.time()
            try:
                reply = await self._attempt(endpoints, placement, body, budget, relay and relaying)
            except PoolHTTPError as exc:
                error = exc
                if exc.error_type == "pool_unauthorized":  # a rotated secret file: read it again
                    for url in {placement.endpoint, placement.prefill} - {None}:
                        self._read_credentials(endpoints, url)  # type: ignore[arg-type]
                record(placement.endpoint, attempt_at, exc.error_type, None)
                await endpoints.release(placement.endpoint, ok=False)
                if not exc.retryable or attempt > pool.retries or relayed:
                    break
                backoff_s = pool.backoff_ms / 1000 * 2 ** (attempt - 1) * self.rng.uniform(0.5, 1.5)
                await asyncio.sleep(backoff_s)
                continue
            except BaseException:  # our own failure (or cancellation) must not keep the slot
                await endpoints.release(placement.endpoint, ok=False)
                raise
            book = endpoints.books[placement.endpoint]
            batch = book.in_flight if book.scrape is None else max(book.scrape.running, 1.0)
            await endpoints.release(
                placement.endpoint, ok=True, ttft_ms=reply.ttft_ms, latency_ms=reply.latency_ms
            )
            cost, energy = footprint(pool, (time.perf_counter() - attempt_started), batch)
            record(placement.endpoint, attempt_at, None, reply.ttft_ms)
            return PoolCall(
                placement.endpoint,
                attempt,
                (time.perf_counter() - started) * 1000,
                reply.response,
                ttft_ms=None if reply.ttft_ms is None else round(reply.ttft_ms, 3),
                gpu_cost_usd=cost,
                energy_j=energy,
                log=tuple(log),
                relayed=relayed,
            )
        return PoolCall(
            tried[-1] if tried else "",
            len(tried),
            (time.perf_counter() - started) * 1000,
            None,
            error_type=error.error_type,
            error=str(error),
            log=tuple(log),
            relayed=relayed,
        )
