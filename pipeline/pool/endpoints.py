"""One pool's endpoints as dispatch sees them: in-flight caps, health, EWMAs, and placement.

Each dispatch process keeps its own book: in-flight counts, circuit breakers and EWMAs come from
its own calls (exact, instant), scraped metrics from its own scrapes (as old as the scrape
interval). Several dispatch instances therefore each cap their *own* in-flight requests per
endpoint at ``max_in_flight`` and publish their own :class:`PoolState` rows (keyed by instance);
the router sums them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.envelope import PoolState
from pipeline.policy import Endpoint, Pool
from pipeline.pool.circuit import CircuitBreaker
from pipeline.pool.credentials import Credentials
from pipeline.pool.selection import (
    EndpointSelector,
    EndpointState,
    NoEndpoint,
    Placement,
    RequestShape,
    build_selector,
)

#: Weight of the newest observation in the TTFT, latency and error-rate EWMAs.
EWMA_ALPHA = 0.2


@dataclass(frozen=True)
class Scrape:
    """What an endpoint's ``/metrics`` said at ``at`` (monotonic seconds)."""

    waiting: float
    running: float
    kv_usage: float | None
    prefix_hit_rate: float | None
    at: float


def _ewma(current: float | None, value: float) -> float:
    return value if current is None else current + EWMA_ALPHA * (value - current)


@dataclass
class EndpointBook:
    spec: Endpoint
    capacity: int
    circuit: CircuitBreaker
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    ttft_ms_ewma: float | None = None
    latency_ms_ewma: float | None = None
    error_rate: float = 0.0
    scrape: Scrape | None = None
    touched: bool = field(default=False, repr=False)
    credentials: Credentials = field(default_factory=Credentials, repr=False)

    def state(self) -> EndpointState:
        scrape = self.scrape
        return EndpointState(
            url=self.spec.url,
            in_flight=self.in_flight,
            capacity=self.capacity,
            waiting=scrape.waiting if scrape else None,
            running=scrape.running if scrape else None,
            kv_usage=scrape.kv_usage if scrape else None,
            prefix_hit_rate=scrape.prefix_hit_rate if scrape else None,
            tier=self.spec.tier,
            role=self.spec.role,
        )


class PoolEndpoints:
    """Placement inside one pool: wait for capacity, skip open circuits, ask the selector."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.selector: EndpointSelector = build_selector(pool.selection)
        self.books = {
            e.url: EndpointBook(
                e, pool.max_in_flight, CircuitBreaker(pool.circuit.failures, pool.circuit.open_s)
            )
            for e in pool.endpoints
        }
        self.waiting = 0
        self._freed = asyncio.Condition()

    @property
    def full(self) -> bool:
        """A request is waiting because every endpoint it could use is at its cap."""
        return self.waiting > 0

    def _available(self, exclude: set[str]) -> list[EndpointState]:
        healthy = [b for b in self.books.values() if b.circuit.allows()]
        if not healthy:
            raise NoEndpoint(
                f"every endpoint of pool {self.pool.name} has an open circuit "
                f"(after {self.pool.circuit.failures} consecutive failures; "
                f"retried in {self.pool.circuit.open_s:.0f}s)"
            )
        free = [b.state() for b in healthy if b.in_flight < b.capacity]
        fresh = [s for s in free if s.url not in exclude]
        return fresh or free

    async def place(
        self, request: RequestShape, exclude: Iterable[str], timeout_s: float
    ) -> Placement:
        """An endpoint (and a prefill endpoint, if disaggregated) with a free slot on each.

        Waits up to ``timeout_s`` while every usable endpoint is at its cap; raises
        :class:`NoEndpoint` when none is usable or the wait times out.
        """
        exclude = set(exclude)
        async with self._freed:
            self.waiting += 1
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        try:
                            placement = self.selector.select_endpoint(
                                request, self._available(exclude)
                            )
                            break
                        except NoEndpoint:
                            if not any(b.circuit.allows() for b in self.books.values()):
                                raise
                        await self._freed.wait()
            except TimeoutError:
                raise NoEndpoint(
                    f"every endpoint of pool {self.pool.name} stayed at its in-flight cap "
                    f"({self.pool.max_in_flight}) for {timeout_s:.1f}s"
                ) from None
            finally:
                self.waiting -= 1
        for url in {placement.endpoint, placement.prefill} - {None}:
            book = self.books[url]  # type: ignore[index]
            book.in_flight += 1
            book.circuit.on_send()
        return placement

    async def release(
        self,
        url: str,
        ok: bool,
        ttft_ms: float | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Record how a call to ``url`` went and free its slot."""
        book = self.books[url]
        book.in_flight -= 1
        book.requests += 1
        book.touched = True
        book.error_rate = _ewma(book.error_rate, 0.0 if ok else 1.0)
        if ok:
            book.circuit.on_success()
            if ttft_ms is not None:
                book.ttft_ms_ewma = _ewma(book.ttft_ms_ewma, ttft_ms)
            if latency_ms is not None:
                book.latency_ms_ewma = _ewma(book.latency_ms_ewma, latency_ms)
        else:
            book.errors += 1
            book.circuit.on_failure()
        async with self._freed:
            self._freed.notify_all()

    def pool_states(self, instance: str, changed_only: bool = True) -> list[PoolState]:
        """One row per endpoint (those with activity since the last call, by default)."""
        rows = []
        for book in self.books.values():
            if changed_only and not (book.touched or book.in_flight):
                continue
            book.touched = False
            scrape = book.scrape
            rows.append(
                PoolState(
                    pool=self.pool.name,
                    endpoint=book.spec.url,
                    instance=instance,
                    requests=book.requests,
                    errors=book.errors,
                    error_rate=round(book.error_rate, 4),
                    latency_ms_ewma=round(book.latency_ms_ewma or 0.0, 3),
                    ttft_ms_ewma=None if book.ttft_ms_ewma is None else round(book.ttft_ms_ewma, 3),
                    in_flight=book.in_flight,
                    capacity=book.capacity,
                    queue_estimate=book.state().queue,
                    circuit=book.circuit.state,
                    kv_usage=scrape.kv_usage if scrape else None,
                    updated_at=time.time(),
                )
            )
        return rows
