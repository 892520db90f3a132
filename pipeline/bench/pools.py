"""``wrp bench pools``: endpoint selection policies on real traces, in the fleet simulator.

For each trace (Mooncake conversations, Azure conversation, Azure code) the pool is
``ENDPOINTS`` x A100 serving Llama-3.1-8B. Its capacity on the trace's mix is measured once (a
burst, least outstanding), the trace is time-scaled to 50 %, 80 % and 95 % of it, and every
selection policy serves the same arrivals. Then, on Azure conversation, context-length pools
(short and long tiers, same GPUs) against the homogeneous pool, disaggregated prefill/decode on
Mooncake, and the smallest fleet for the TTFT SLO beside vllm-sr-sim's sizing of the same
workload (its analytical M/G/c model on a profile derived for the same model and GPU).
Writes ``<state-dir>/bench/pools.json`` and prints a table per trace.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from pipeline.policy import Endpoint, Pool, SelectionConfig
from pipeline.pool.sim import fleet, peer_sim, traces

GPU, MODEL = "A100", "llama-3.1-8b"
ENDPOINTS = 8
LOADS = (0.5, 0.8, 0.95)
POLICIES = ("round_robin", "least_outstanding", "power_of_two", "prefix_affinity", "kv_aware")
#: TTFT SLO per trace, fixed before any run: Mooncake prompts average ~7k tokens.
SLO_TTFT_S = {"mooncake": 2.0, "azure-conv": 1.0, "azure-code": 1.0}
#: Context-length pools on Azure conversation: prompt + output up to this go to the short tier.
BOUNDARY_TOKENS = 2048


def pool_of(policy: str, endpoints: int = ENDPOINTS, **selection) -> Pool:
    return fleet.endpoint_urls(
        Pool(
            name="bench",
            gpu=GPU,
            endpoints=[Endpoint(url="http://sim-bench/0")],
            selection=SelectionConfig(policy=policy, **selection),
        ),
        endpoints,
    )


def tiered(short: int, long: int) -> Pool:
    endpoints = [Endpoint(url=f"http://sim-s{i}", tier="short") for i in range(short)]
    endpoints += [Endpoint(url=f"http://sim-l{i}", tier="long") for i in range(long)]
    return Pool(
        name="tiers",
        gpu=GPU,
        endpoints=endpoints,
        selection=SelectionConfig(policy="context_length", boundary_tokens=BOUNDARY_TOKENS),
    )


def split(prefill: int, decode: int) -> Pool:
    endpoints = [Endpoint(url=f"http://sim-p{i}", role="prefill") for i in range(prefill)]
    endpoints += [Endpoint(url=f"http://sim-d{i}", role="decode") for i in range(decode)]
    return Pool(
        name="pd", gpu=GPU, endpoints=endpoints, selection=SelectionConfig(policy="disaggregated")
    )


def _print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'load':>5} {'policy':<18} {'TTFT p50':>9} {'TTFT p99':>9} {'e2e p99':>8} "
        f"{'SLO ok':>7} {'prefix hit':>10} {'preempt':>7}"
    )
    for r in rows:
        print(
            f"{r['load']:>5.2f} {r['label']:<18} {r['ttft_p50_s']:>8.3f}s {r['ttft_p99_s']:>8.3f}s "
            f"{r['e2e_p99_s']:>7.2f}s {r['slo_attainment']:>7.1%} {r['prefix_hit_rate']:>10.1%} "
            f"{r['preemptions']:>7}",
            flush=True,
        )


def _run(
    label: str, load: float, offered: list[traces.TraceRequest], pool: Pool, slo: float
) -> dict:
    started = time.perf_counter()
    report = fleet.simulate(offered, pool, MODEL, slo)
    wall = round(time.perf_counter() - started, 1)
    return {"label": label, "load": load, **report.row(), "wall_s": wall}


def layouts(name: str) -> dict[str, Pool]:
    """Every pool the trace is served by: each policy, then the trace's alternative layouts."""
    pools = {policy: pool_of(policy) for policy in POLICIES}
    if name == "azure-conv":
        for short in (4, 6):
            pools[f"tiers {short}s+{ENDPOINTS - short}l"] = tiered(short, ENDPOINTS - short)
    if name == "mooncake":
        for prefill in (2, 4):
            pools[f"P/D {prefill}p+{ENDPOINTS - prefill}d"] = split(prefill, ENDPOINTS - prefill)
    return pools


def run_pools_bench(out_dir: Path, limit: int) -> dict:
    host = platform.processor() or platform.machine()
    print(
        f"setup: {ENDPOINTS} x {GPU} endpoints serving {MODEL}, first {limit} requests of each "
        f"trace, loads {LOADS} of the pool's measured capacity; host {host}",
        flush=True,
    )
    results: dict = {
        "setup": {
            "gpu": GPU,
            "model": MODEL,
            "endpoints": ENDPOINTS,
            "limit": limit,
            "slo_ttft_s": SLO_TTFT_S,
            "boundary_tokens": BOUNDARY_TOKENS,
        }
    }
    for name in ("mooncake", "azure-conv", "azure-code"):
        requests = traces.load_trace(name, limit)
        slo = SLO_TTFT_S[name]
        capacity = fleet.capacity(requests, pool_of("least_outstanding"), MODEL)
        print(f"\n{name}: {len(requests)} requests, capacity {capacity:.2f} req/s", flush=True)
        rows = []
        for load in LOADS:
            offered = traces.rescale(requests, rate_per_s=load * capacity)
            for label, pool in layouts(name).items():
                rows.append(_run(label, load, offered, pool, slo))
        _print_rows(f"{name} (SLO: TTFT <= {slo:g}s)", rows)
        results[name] = {"capacity_req_s": capacity, "rows": rows}
    results["sizing"] = sizing_against_peer(traces.load_trace("azure-conv", limit))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pools.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out_dir / 'pools.json'}")
    return results


def sizing_against_peer(requests: list[traces.TraceRequest], slo: float = 0.5) -> list[dict]:
    """Smallest A100 fleet for p99 TTFT <= ``slo`` at several rates: ours vs vllm-sr-sim's."""
    prompts = [r.prompt_tokens for r in requests]
    outputs = [r.output_tokens for r in requests]
    rows = []
    print(f"\nsmallest fleet for p99 TTFT <= {slo}s on azure-conv ({GPU}, {MODEL})")
    header = ("req/s", "ours", "ours p99", "vllm-sr-sim", "its p99", "its util")
    print("{:>6} {:>5} {:>9} {:>11} {:>8} {:>8}".format(*header))
    for rate in (5.0, 10.0, 20.0, 40.0):
        offered = traces.rescale(requests, rate_per_s=rate)
        ours = fleet.smallest_fleet(
            offered, pool_of("least_outstanding", 1), MODEL, slo, max_endpoints=48
        )
        peer = peer_sim.analytical(prompts, outputs, rate, GPU, 1, slo_ttft_s=slo, model=MODEL)
        at_min = peer_sim.analytical(
            prompts, outputs, rate, GPU, peer.min_gpus, slo_ttft_s=slo, model=MODEL
        )
        row = {
            "rate_req_s": rate,
            "ours_endpoints": ours.endpoints if ours else None,
            "ours_ttft_p99_s": ours.ttft_p99_s if ours else None,
            "peer_min_gpus": peer.min_gpus,
            "peer_ttft_p99_s": at_min.p99_ttft_s,
            "peer_utilisation": at_min.utilisation,
        }
        rows.append(row)
        print(
            f"{rate:>6g} {row['ours_endpoints'] or '-':>5} {row['ours_ttft_p99_s'] or 0:>8.3f}s "
            f"{peer.min_gpus:>11} {at_min.p99_ttft_s:>7.3f}s {at_min.utilisation:>8.2f}",
            flush=True,
        )
    return rows
