"""``wrp sim fleet``: a pool's endpoints as simulated engines in a discrete-event loop.

No broker and no sockets: trace arrivals go through the same
:class:`~pipeline.pool.selection.EndpointSelector` dispatch uses, into one
:class:`~pipeline.pool.sim.engine.Engine` per endpoint, on a virtual clock. The selector sees each
endpoint's exact in-flight count, queue, KV usage and recent prefix-cache hit rate (dispatch sees
the same quantities, up to a scrape interval old). Disaggregated pools prefill on one engine,
move the KV at ``KV_TRANSFER_GBPS`` and decode on another.

Reports TTFT and end-to-end p50/p99, SLO attainment, prefix-cache hit rate, GPU cost per hour and
per 1M tokens, and tokens per joule (idle GPUs draw idle power); :func:`smallest_fleet` searches
the fewest endpoints that meet a p99 TTFT SLO.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.policy import Endpoint, Pool
from pipeline.pool.gpu import GPUS, MODELS
from pipeline.pool.selection import EndpointState, RequestShape, build_selector
from pipeline.pool.sim.engine import Engine, EngineConfig, SimRequest
from pipeline.pool.sim.traces import TraceRequest, engine_block_hashes

#: Bandwidth of the prefill -> decode KV transfer (RDMA / NVLink class), GB/s.
KV_TRANSFER_GBPS = 25.0


@dataclass(frozen=True)
class FleetReport:
    policy: str
    endpoints: int
    requests: int
    rate_per_s: float
    duration_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    e2e_p50_s: float
    e2e_p99_s: float
    slo_ttft_s: float
    slo_attainment: float
    prefix_hit_rate: float
    preemptions: int
    gpu_cost_per_hour: float
    cost_per_mtok: float
    tokens_per_joule: float

    def row(self) -> dict[str, float | int | str]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}

    def render(self) -> str:
        return "\n".join(
            [
                f"{self.requests} requests at {self.rate_per_s:.2f}/s on {self.endpoints} "
                f"endpoints ({self.policy}), {self.duration_s:.0f}s simulated",
                f"TTFT p50 {self.ttft_p50_s:.3f}s  p99 {self.ttft_p99_s:.3f}s   "
                f"end-to-end p50 {self.e2e_p50_s:.2f}s  p99 {self.e2e_p99_s:.2f}s",
                f"SLO (TTFT <= {self.slo_ttft_s:g}s) attained by {self.slo_attainment:.1%}; "
                f"prefix-cache hit rate {self.prefix_hit_rate:.1%}; "
                f"{self.preemptions} preemptions",
                f"GPU cost ${self.gpu_cost_per_hour:.2f}/h, ${self.cost_per_mtok:.3f} per 1M "
                f"tokens; {self.tokens_per_joule:.2f} tokens/J",
            ]
        )


def endpoint_urls(pool: Pool, count: int) -> Pool:
    """``pool`` with ``count`` endpoints, keeping the tier/role mix of its first ones."""
    template = pool.endpoints
    endpoints = [
        Endpoint(
            url=f"http://sim-{pool.name}/{i}",
            tier=template[i % len(template)].tier,
            role=template[i % len(template)].role,
        )
        for i in range(count)
    ]
    return pool.model_copy(update={"endpoints": endpoints})


class _Endpoint:
    def __init__(self, spec: Endpoint, engine: Engine) -> None:
        self.spec = spec
        self.engine = engine
        self.in_flight = 0
        self.stepping = False
        self.queries_seen = 0.0
        self.hits_seen = 0.0
        self.hit_rate: float | None = None

    def state(self) -> EndpointState:
        engine = self.engine
        return EndpointState(
            url=self.spec.url,
            in_flight=self.in_flight,
            capacity=1 << 30,
            waiting=float(engine.num_waiting),
            running=float(engine.num_running),
            kv_usage=engine.kv_usage,
            prefix_hit_rate=self.hit_rate,
            tier=self.spec.tier,
            role=self.spec.role,
        )

    def refresh_hit_rate(self) -> None:
        """Hit rate since the previous refresh (what a scrape every interval would show)."""
        queries, hits = self.engine.prefix_queries, self.engine.prefix_hits
        if queries > self.queries_seen:
            self.hit_rate = (hits - self.hits_seen) / (queries - self.queries_seen)
        self.queries_seen, self.hits_seen = queries, hits


def simulate(
    trace: Sequence[TraceRequest],
    pool: Pool,
    model: str,
    slo_ttft_s: float,
    config: EngineConfig | None = None,
    scrape_interval_s: float = 1.0,
) -> FleetReport:
    """Serve ``trace`` with ``pool`` (its GPU, endpoints and selection policy) running ``model``.

    A disaggregated request's first token comes from its decode endpoint, after the prefill and
    the KV transfer (as dispatch measures it)."""
    if not trace:
        raise ValueError("the trace has no requests")
    gpu, spec = GPUS[pool.gpu], replace(MODELS[model], tp=pool.gpus_per_endpoint)
    config = config or EngineConfig()
    selector = build_selector(pool.selection)
    endpoints = {e.url: _Endpoint(e, Engine(gpu, spec, config)) for e in pool.endpoints}
    events: list[tuple[float, int, Callable[[float], None]]] = []
    order = itertools.count()
    arrival: dict[str, float] = {}
    first_token: dict[str, float] = {}
    finished: dict[str, float] = {}
    decode_of: dict[str, tuple[str, SimRequest]] = {}

    def at(time_s: float, action: Callable[[float], None]) -> None:
        heapq.heappush(events, (time_s, next(order), action))

    def step(endpoint: _Endpoint) -> Callable[[float], None]:
        def run(now: float) -> None:
            engine = endpoint.engine
            if not engine.has_work:
                endpoint.stepping = False
                return
            iteration = engine.step(now)
            done_at = now + iteration.duration_s

            def complete(when: float) -> None:
                for request_id in iteration.first_token:
                    if request_id not in decode_of:
                        first_token.setdefault(request_id, when)
                for request_id in iteration.finished:
                    endpoint.in_flight -= 1
                    if request_id in decode_of:
                        handoff(request_id, when)
                    else:
                        finished[request_id] = when
                run(when)

            at(done_at, complete)

        return run

    def submit(endpoint: _Endpoint, request: SimRequest, now: float) -> None:
        endpoint.in_flight += 1
        endpoint.engine.add(request, now)
        if not endpoint.stepping:
            endpoint.stepping = True
            at(now, step(endpoint))

    def handoff(prefill_id: str, now: float) -> None:
        decode_url, request = decode_of.pop(prefill_id)
        transfer_s = request.prompt_tokens * spec.kv_bytes_per_token / (KV_TRANSFER_GBPS * 1e9)
        at(now + transfer_s, lambda when: submit(endpoints[decode_url], request, when))

    def arrive(request: TraceRequest) -> Callable[[float], None]:
        def run(now: float) -> None:
            blocks = engine_block_hashes(request, config.block_size)
            shape = RequestShape(
                request.request_id, request.prompt_tokens, request.output_tokens, blocks
            )
            placement = selector.select_endpoint(shape, [e.state() for e in endpoints.values()])
            sim = SimRequest(
                id=request.request_id,
                prompt_tokens=request.prompt_tokens,
                output_tokens=max(1, request.output_tokens),
                blocks=blocks,
                arrival_s=now,
            )
            arrival[sim.id] = now
            if placement.prefill is None:
                submit(endpoints[placement.endpoint], sim, now)
                return
            prefill = replace(sim, id=f"{sim.id}#prefill", output_tokens=1)
            decode_of[prefill.id] = (placement.endpoint, replace(sim, prefilled=True))
            submit(endpoints[placement.prefill], prefill, now)

        return run

    def scrape(now: float) -> None:
        for endpoint in endpoints.values():
            endpoint.refresh_hit_rate()
        if len(finished) < len(trace):
            at(now + scrape_interval_s, scrape)

    start = trace[0].arrival_s if trace else 0.0
    for request in trace:
        at(request.arrival_s - start, arrive(request))
    at(0.0, scrape)
    while events:
        now, _, action = heapq.heappop(events)
        action(now)
    makespan = max(finished.values())
    return _report(pool, trace, endpoints, arrival, first_token, finished, makespan, slo_ttft_s)


def _report(
    pool: Pool,
    trace: Sequence[TraceRequest],
    endpoints: dict[str, _Endpoint],
    arrival: dict[str, float],
    first_token: dict[str, float],
    finished: dict[str, float],
    makespan: float,
    slo_ttft_s: float,
) -> FleetReport:
    gpu = GPUS[pool.gpu]
    ids = list(finished)
    ttft = np.array([first_token[i] - arrival[i] for i in ids])
    e2e = np.array([finished[i] - arrival[i] for i in ids])
    engines = [e.engine for e in endpoints.values()]
    tokens = sum(r.prompt_tokens + r.output_tokens for r in trace)
    gpus = len(engines) * pool.gpus_per_endpoint
    duration = max(makespan, 1e-9)
    idle_j = sum((duration - e.busy_s) * gpu.power_w(0) * pool.gpus_per_endpoint for e in engines)
    energy = sum(e.energy_j for e in engines) + idle_j
    cost_per_hour = gpus * gpu.usd_per_hour
    queries = sum(e.prefix_queries for e in engines)
    span = trace[-1].arrival_s - trace[0].arrival_s if len(trace) > 1 else 0.0
    return FleetReport(
        policy=pool.selection.policy,
        endpoints=len(engines),
        requests=len(ids),
        rate_per_s=(len(trace) - 1) / span if span > 0 else 0.0,
        duration_s=duration,
        ttft_p50_s=float(np.percentile(ttft, 50)),
        ttft_p99_s=float(np.percentile(ttft, 99)),
        e2e_p50_s=float(np.percentile(e2e, 50)),
        e2e_p99_s=float(np.percentile(e2e, 99)),
        slo_ttft_s=slo_ttft_s,
        slo_attainment=float(np.mean(ttft <= slo_ttft_s)),
        prefix_hit_rate=sum(e.prefix_hits for e in engines) / queries if queries else 0.0,
        preemptions=sum(e.num_preemptions for e in engines),
        gpu_cost_per_hour=cost_per_hour,
        cost_per_mtok=cost_per_hour * duration / 3600 / tokens * 1e6,
        tokens_per_joule=tokens / energy if energy else 0.0,
    )


def capacity(trace: Sequence[TraceRequest], pool: Pool, model: str) -> float:
    """Requests per second the pool sustains on this mix: the throughput of the whole trace
    offered at once (a burst), with least-outstanding selection inside the pool's layout."""
    burst = [replace(r, arrival_s=0.0) for r in trace]
    selection = pool.selection
    if selection.policy not in ("context_length", "disaggregated"):
        selection = selection.model_copy(update={"policy": "least_outstanding"})
    base = pool.model_copy(update={"selection": selection})
    report = simulate(burst, base, model, slo_ttft_s=1.0)
    return len(burst) / report.duration_s


def smallest_fleet(
    trace: Sequence[TraceRequest],
    pool: Pool,
    model: str,
    slo_ttft_s: float,
    max_endpoints: int = 64,
    progress: Callable[[FleetReport], None] | None = None,
) -> FleetReport | None:
    """The report of the fewest endpoints whose p99 TTFT meets ``slo_ttft_s`` (binary search,
    assuming more endpoints never hurt), or None when ``max_endpoints`` do not."""

    def run(count: int) -> FleetReport:
        report = simulate(trace, endpoint_urls(pool, count), model, slo_ttft_s)
        if progress is not None:
            progress(report)
        return report

    low, high = 1, max_endpoints
    best = run(high)
    if best.ttft_p99_s > slo_ttft_s:
        return None
    while low < high:
        middle = (low + high) // 2
        report = run(middle)
        if report.ttft_p99_s <= slo_ttft_s:
            high, best = middle, report
        else:
            low = middle + 1
    return best
