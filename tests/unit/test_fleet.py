"""The fleet simulator: policies, completion, SLOs, disaggregation, tiers, sizing, cost, energy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest

from pipeline.bench.pools import pool_of, split, tiered
from pipeline.policy import Endpoint, Pool, SelectionConfig
from pipeline.pool.gpu import GPUS, MODELS
from pipeline.pool.sim import fleet
from pipeline.pool.sim.engine import Engine, SimRequest
from pipeline.pool.sim.traces import MOONCAKE_BLOCK, TraceRequest, engine_block_hashes

MODEL = "llama-3.1-8b"
REPORT = fleet._report


@dataclass
class Seen:
    """What ``simulate`` handed to its report: per-request times and the endpoints' engines."""

    arrival: dict[str, float]
    first_token: dict[str, float]
    finished: dict[str, float]
    engines: dict[str, Engine]

    def ttft(self, request_id: str) -> float:
        return self.first_token[request_id] - self.arrival[request_id]

    def e2e(self, request_id: str) -> float:
        return self.finished[request_id] - self.arrival[request_id]


def run(
    monkeypatch: pytest.MonkeyPatch, trace: Sequence[TraceRequest], pool: Pool, slo: float = 1.0
) -> tuple[fleet.FleetReport, Seen]:
    """``simulate``, also returning what it measured per request (a spy on ``_report``)."""
    seen: list[Seen] = []

    def spy(
        pool: Pool, trace: Any, endpoints: Any, arrival: Any, first: Any, done: Any, *rest: Any
    ) -> fleet.FleetReport:
        engines = {url: e.engine for url, e in endpoints.items()}
        seen.append(Seen(dict(arrival), dict(first), dict(done), engines))
        return REPORT(pool, trace, endpoints, arrival, first, done, *rest)

    monkeypatch.setattr(fleet, "_report", spy)
    return fleet.simulate(trace, pool, MODEL, slo), seen[0]


def conversations(count: int = 9, turns: int = 6, gap_s: float = 0.15) -> list[TraceRequest]:
    """Mooncake-like multi-turn chats: a shared system block, then each turn extends the last
    turn's blocks by one. Turns arrive interleaved (all first turns, then all second turns); a
    ``count`` coprime with the endpoint count makes round robin move each chat every turn."""
    trace = []
    for turn in range(turns):
        for chat in range(count):
            blocks = (0, *(1000 * (chat + 1) + k for k in range(4 + turn)))
            index = len(trace)
            prompt = len(blocks) * MOONCAKE_BLOCK
            trace.append(
                TraceRequest("chat", index, index * gap_s, prompt, 32, blocks, MOONCAKE_BLOCK)
            )
    return trace


def uniform(count: int, gap_s: float, prompt: int = 2000, output: int = 64) -> list[TraceRequest]:
    """``count`` requests with unique prompts, one every ``gap_s`` seconds."""
    return [TraceRequest("u", i, i * gap_s, prompt, output) for i in range(count)]


def mixed(count: int = 40) -> list[TraceRequest]:
    """Unique prompts of varied lengths (500 to 3000 tokens) at about 12 requests per second."""
    return [
        TraceRequest("m", i, i / 12, 500 + (i * 733) % 2500, 20 + (i * 37) % 180)
        for i in range(count)
    ]


def test_prefix_affinity_beats_round_robin_on_multi_turn_chats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = conversations()
    robin, robin_seen = run(monkeypatch, trace, pool_of("round_robin", 4))
    affinity, affinity_seen = run(monkeypatch, trace, pool_of("prefix_affinity", 4))
    ids = [r.request_id for r in trace]

    def mean_ttft(seen: Seen) -> float:
        return sum(seen.ttft(i) for i in ids) / len(ids)

    assert affinity.prefix_hit_rate > robin.prefix_hit_rate + 0.2
    assert mean_ttft(affinity_seen) < 0.75 * mean_ttft(robin_seen)
    assert affinity.ttft_p50_s < robin.ttft_p50_s


@pytest.mark.parametrize(
    "pool",
    [pool_of("least_outstanding", 3), pool_of("kv_aware", 3), split(1, 2)],
    ids=["least_outstanding", "kv_aware", "disaggregated"],
)
def test_every_request_finishes_once_and_ttft_within_e2e(
    monkeypatch: pytest.MonkeyPatch, pool: Pool
) -> None:
    trace = mixed()
    report, seen = run(monkeypatch, trace, pool)
    ids = {r.request_id for r in trace}
    decoders = [seen.engines[e.url] for e in pool.endpoints if e.role != "prefill"]
    assert report.requests == len(trace)
    assert set(seen.finished) == ids == set(seen.first_token)
    assert sum(e.finished_requests for e in decoders) == len(trace)
    assert all(0 < seen.ttft(i) <= seen.e2e(i) for i in ids)
    assert report.ttft_p99_s <= report.e2e_p99_s


def test_slo_attainment_full_at_low_load_and_drops_at_overload() -> None:
    pool = pool_of("least_outstanding", 1)
    idle = fleet.simulate(uniform(20, gap_s=5.0), pool, MODEL, slo_ttft_s=2.0)
    burst = fleet.simulate(uniform(20, gap_s=0.0), pool, MODEL, slo_ttft_s=2.0)
    assert idle.slo_attainment == 1.0
    assert burst.slo_attainment < 0.5
    assert burst.ttft_p99_s > 2.0


def test_disaggregated_pool_serves_everything_with_one_token_prefills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = mixed()
    pool = split(2, 2)
    report, seen = run(monkeypatch, trace, pool)
    prefill = [seen.engines[e.url] for e in pool.endpoints if e.role == "prefill"]
    decode = [seen.engines[e.url] for e in pool.endpoints if e.role == "decode"]
    assert report.requests == len(trace)
    assert sum(e.finished_requests for e in prefill) == len(trace)
    assert sum(e.generation_tokens for e in prefill) == len(trace)
    assert sum(e.generation_tokens for e in decode) == sum(r.output_tokens for r in trace)


def test_disaggregated_ttft_is_prefill_then_transfer_then_first_decode_step() -> None:
    request = TraceRequest("long", 0, 0.0, 8000, 20)
    engine = Engine(GPUS["A100"], MODELS[MODEL])
    engine.add(SimRequest("p", 8000, 1, engine_block_hashes(request), 0.0), 0.0)
    prefill_s = 0.0
    while engine.has_work:
        prefill_s += engine.step(prefill_s).duration_s
    disaggregated = fleet.simulate([request], split(1, 1), MODEL, 1.0)
    unified = fleet.simulate([request], pool_of("least_outstanding", 1), MODEL, 1.0)
    transfer_s = 8000 * MODELS[MODEL].kv_bytes_per_token / (fleet.KV_TRANSFER_GBPS * 1e9)
    assert unified.ttft_p50_s == pytest.approx(prefill_s)
    assert disaggregated.ttft_p50_s > prefill_s + transfer_s
    assert disaggregated.ttft_p50_s < prefill_s + transfer_s + 0.1  # one decode step
    assert disaggregated.e2e_p50_s > unified.e2e_p50_s


def test_context_length_pools_send_long_requests_only_to_the_long_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace = mixed(60)
    pool = tiered(2, 2)
    boundary = pool.selection.boundary_tokens
    assert boundary is not None
    report, seen = run(monkeypatch, trace, pool)
    by_tier: dict[str, list[Engine]] = {"short": [], "long": []}
    for endpoint in pool.endpoints:
        by_tier[endpoint.tier or "long"].append(seen.engines[endpoint.url])
    long = [r for r in trace if r.prompt_tokens + r.output_tokens > boundary]
    short = [r for r in trace if r.prompt_tokens + r.output_tokens <= boundary]
    assert long and short
    assert report.requests == len(trace)
    assert sum(e.prompt_tokens for e in by_tier["long"]) == sum(r.prompt_tokens for r in long)
    assert sum(e.prompt_tokens for e in by_tier["short"]) == sum(r.prompt_tokens for r in short)
    assert all(e.finished_requests > 0 for tier in by_tier.values() for e in tier)


def test_context_length_pool_without_a_long_tier_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="tier: short and tier: long"):
        Pool(
            name="short-only",
            endpoints=[Endpoint(url="http://sim-s0", tier="short")],
            selection=SelectionConfig(policy="context_length", boundary_tokens=2048),
        )


def test_smallest_fleet_is_minimal_and_meets_the_slo() -> None:
    trace, slo = mixed(120), 0.5
    reports: list[fleet.FleetReport] = []
    base = pool_of("least_outstanding", 1)
    best = fleet.smallest_fleet(trace, base, MODEL, slo, max_endpoints=8, progress=reports.append)
    assert best is not None and best.endpoints > 1
    assert best.ttft_p99_s <= slo
    fewer = fleet.simulate(trace, fleet.endpoint_urls(base, best.endpoints - 1), MODEL, slo)
    assert fewer.ttft_p99_s > slo
    assert reports[0].endpoints == 8 and best in reports


def test_smallest_fleet_is_none_when_max_endpoints_miss_the_slo() -> None:
    trace = mixed(120)
    base = pool_of("least_outstanding", 1)
    assert fleet.smallest_fleet(trace, base, MODEL, 0.5, max_endpoints=2) is None


def test_cost_per_hour_counts_every_gpu_of_every_endpoint() -> None:
    pool = Pool(
        name="big",
        gpu="H100",
        gpus_per_endpoint=4,
        endpoints=[Endpoint(url=f"http://sim-big/{i}") for i in range(3)],
    )
    report = fleet.simulate(uniform(5, gap_s=0.5), pool, "llama-3.1-70b", 1.0)
    assert report.gpu_cost_per_hour == pytest.approx(3 * 4 * GPUS["H100"].usd_per_hour)
    tokens = 5 * (2000 + 64)
    per_mtok = report.gpu_cost_per_hour * report.duration_s / 3600 / tokens * 1e6
    assert report.cost_per_mtok == pytest.approx(per_mtok)


def test_idle_heavy_fleet_gets_fewer_tokens_per_joule() -> None:
    pool = pool_of("least_outstanding", 2)
    idle = fleet.simulate(uniform(20, gap_s=10.0), pool, MODEL, 1.0)
    busy = fleet.simulate(uniform(20, gap_s=0.0), pool, MODEL, 1.0)
    assert 0 < idle.tokens_per_joule < busy.tokens_per_joule


@pytest.mark.parametrize("interval_s", [1.0, 5.0])
def test_duration_ends_at_the_last_finish(interval_s: float) -> None:
    request = TraceRequest("one", 0, 0.0, 1000, 20)
    pool = pool_of("least_outstanding", 1)
    report = fleet.simulate([request], pool, MODEL, 1.0, scrape_interval_s=interval_s)
    assert report.duration_s == pytest.approx(report.e2e_p50_s)


def test_endpoint_urls_keeps_the_layout_mix() -> None:
    pool = fleet.endpoint_urls(split(1, 1), 5)
    assert [e.role for e in pool.endpoints] == ["prefill", "decode", "prefill", "decode", "prefill"]
    assert len({e.url for e in pool.endpoints}) == 5
