"""The vLLM engine model: scheduling behaviour, and the queue it forms against closed forms."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from pipeline.pool.gpu import GPUS, MODELS, iteration_s, kv_blocks
from pipeline.pool.sim.engine import Engine, EngineConfig, Iteration, SimRequest

LLAMA_8B = MODELS["llama-3.1-8b"]


def request(
    rid: str,
    prompt: int = 64,
    output: int = 4,
    arrival: float = 0.0,
    prefix: str | None = None,
    prefilled: bool = False,
) -> SimRequest:
    """A request whose full prompt blocks hash like ``prefix``'s (its own id by default)."""
    blocks = tuple(hash((prefix or rid, i)) for i in range(prompt // 16))
    return SimRequest(rid, prompt, output, blocks, arrival, prefilled)


def engine(**config: object) -> Engine:
    return Engine(GPUS["A100"], LLAMA_8B, EngineConfig(**config))  # type: ignore[arg-type]


@dataclass
class Run:
    """What a discrete-event loop saw: every iteration and each request's event times."""

    iterations: list[Iteration] = field(default_factory=list)
    first_token_s: dict[str, float] = field(default_factory=dict)
    finished_s: dict[str, float] = field(default_factory=dict)
    tokens: Counter[str] = field(default_factory=Counter)


def drive(eng: Engine, requests: list[SimRequest]) -> Run:
    """A virtual-clock event loop: arrivals join between steps, events happen at step ends."""
    pending = sorted(requests, key=lambda r: r.arrival_s)
    run, clock, index = Run(), 0.0, 0
    while index < len(pending) or eng.has_work:
        if not eng.has_work:
            clock = max(clock, pending[index].arrival_s)
        while index < len(pending) and pending[index].arrival_s <= clock:
            eng.add(pending[index], clock)
            index += 1
        iteration = eng.step(clock)
        clock += iteration.duration_s
        run.iterations.append(iteration)
        run.first_token_s.update(dict.fromkeys(iteration.first_token, clock))
        run.finished_s.update(dict.fromkeys(iteration.finished, clock))
        run.tokens.update(dict(iteration.tokens))
    return run


def test_a_long_prompt_is_prefilled_in_budget_sized_chunks() -> None:
    run = drive(engine(max_num_batched_tokens=2048), [request("long", prompt=5000, output=3)])
    assert [i.prefill_tokens for i in run.iterations[:3]] == [2048, 2048, 904]
    assert [i.first_token for i in run.iterations[:3]] == [(), (), ("long",)]
    assert run.tokens["long"] == 3


def test_decode_iterations_slow_down_as_the_batch_grows() -> None:
    gpu = GPUS["A100"]
    one = iteration_s(gpu, LLAMA_8B, 0, 1, context_tokens=1000, attention_pairs=1000)
    many = iteration_s(gpu, LLAMA_8B, 0, 64, context_tokens=64_000, attention_pairs=64_000)
    assert many > one


def test_the_kv_budget_holds_a_request_back_until_blocks_free_up() -> None:
    # 100 prompt + 20 output tokens need 8 blocks: two such requests do not fit in 10.
    run = drive(engine(kv_blocks=10), [request("a", 100, 20), request("b", 100, 20)])
    assert run.iterations[0].batch_size == 1
    assert run.first_token_s["b"] > run.finished_s["a"]
    assert run.tokens == {"a": 20, "b": 20}


def test_a_shared_prefix_is_computed_once() -> None:
    eng = engine()
    drive(eng, [request("a", prompt=320, prefix="doc")])
    second = drive(eng, [request("b", prompt=320, prefix="doc")])
    # 20 full blocks: 19 hit, the last block is recomputed to sample from its last token.
    assert second.iterations[0].prefill_tokens == 16
    assert (eng.prefix_queries, eng.prefix_hits) == (640, 304)


def test_without_prefix_caching_every_prompt_is_computed_in_full() -> None:
    eng = engine(enable_prefix_caching=False)
    drive(eng, [request("a", prompt=320, prefix="doc")])
    second = drive(eng, [request("b", prompt=320, prefix="doc")])
    assert second.iterations[0].prefill_tokens == 320
    assert (eng.prefix_queries, eng.prefix_hits) == (0, 0)


def test_the_least_recently_freed_prefix_is_evicted_first() -> None:
    # 12 blocks. a and b hold 5 each (4 prompt blocks, 1 for the output) and leave 4 cached.
    eng = engine(kv_blocks=12)
    drive(eng, [request("a", prefix="A")])
    drive(eng, [request("b", prefix="B")])
    # c needs 9: the 4 never used, then a's 4 (freed first), then b's last block.
    drive(eng, [request("c", prompt=128, prefix="C")])
    hits = eng.prefix_hits
    drive(eng, [request("b2", prefix="B")])
    assert eng.prefix_hits - hits == 48  # B survived: 3 of its 4 blocks hit (the last is kept)
    hits = eng.prefix_hits
    drive(eng, [request("a2", prefix="A")])
    assert eng.prefix_hits == hits  # A, freed first, was evicted


def test_running_out_of_kv_preempts_and_every_request_still_gets_all_its_tokens() -> None:
    # Three requests grow to 10 blocks each in a 16-block cache: someone must give way.
    requests = [request(f"r{i}", prompt=48, output=100) for i in range(3)]
    eng = engine(kv_blocks=16)
    run = drive(eng, requests)
    assert eng.num_preemptions > 0
    assert any(i.preempted for i in run.iterations)
    assert run.tokens == {r.id: 100 for r in requests}
    assert sorted(run.finished_s) == ["r0", "r1", "r2"]
    assert eng.kv_usage == 0.0 and not eng.has_work


def test_preemption_takes_the_most_recently_admitted_request() -> None:
    requests = [request(f"r{i}", prompt=48, output=100) for i in range(3)]
    run = drive(engine(kv_blocks=16), requests)
    first = next(i.preempted for i in run.iterations if i.preempted)
    assert first == ("r2",)


def test_a_prefilled_request_only_decodes() -> None:
    eng = engine()
    run = drive(eng, [request("d", prompt=1000, output=5, prefilled=True)])
    assert all(i.prefill_tokens == 0 for i in run.iterations)
    assert sum(i.decode_tokens for i in run.iterations) == 5
    assert run.tokens["d"] == 5
    cold = drive(engine(), [request("p", prompt=1000, output=5)])
    assert run.first_token_s["d"] < cold.first_token_s["p"]


def test_engine_counters_follow_vllm_meanings() -> None:
    eng = engine()
    drive(eng, [request("a", prompt=100, output=7), request("b", prompt=50, output=3)])
    assert (eng.prompt_tokens, eng.generation_tokens, eng.finished_requests) == (150, 10, 2)
    assert eng.energy_j > 0 and eng.busy_s > 0


def test_faster_gpus_run_the_same_iteration_faster() -> None:
    times = [
        iteration_s(GPUS[name], LLAMA_8B, 512, 32, context_tokens=40_000, attention_pairs=200_000)
        for name in ("H100", "A100", "A10G")
    ]
    assert times == sorted(times)
    assert all(kv_blocks(gpu, LLAMA_8B) > 0 for gpu in GPUS.values())


def test_power_rises_from_idle_towards_the_board_limit() -> None:
    gpu = GPUS["H100"]
    draws = [gpu.power_w(batch) for batch in (0, 1, 16, 256, 4096)]
    assert draws[0] == gpu.idle_w
    assert draws == sorted(draws) and draws[-1] < gpu.max_w


# Closed forms: one sequence at a time, no prefix cache, identical requests = a single server
# with deterministic service.
PROMPT, OUTPUT = 200, 10


def single_server() -> Engine:
    return engine(max_num_seqs=1, enable_prefix_caching=False)


def service() -> tuple[float, float]:
    """(prefill time, service time) of one request alone."""
    run = drive(single_server(), [request("alone", PROMPT, OUTPUT)])
    return run.first_token_s["alone"], run.finished_s["alone"]


def test_deterministic_arrivals_below_capacity_never_queue() -> None:
    prefill_s, service_s = service()
    arrivals = [request(f"r{i}", PROMPT, OUTPUT, arrival=i * 1.2 * service_s) for i in range(50)]
    run = drive(single_server(), arrivals)
    for r in arrivals:
        assert run.first_token_s[r.id] - r.arrival_s == pytest.approx(prefill_s)


def test_poisson_arrivals_wait_as_pollaczek_khinchine_predicts() -> None:
    prefill_s, service_s = service()
    rho, rng, clock = 0.5, random.Random(7), 0.0
    arrivals = []
    for i in range(4000):
        clock += rng.expovariate(rho / service_s)
        arrivals.append(request(f"r{i}", PROMPT, OUTPUT, arrival=clock))
    run = drive(single_server(), arrivals)
    waits = [run.first_token_s[r.id] - r.arrival_s - prefill_s for r in arrivals]
    expected = rho * service_s / (2 * (1 - rho))  # M/D/1 mean wait in queue
    assert sum(waits) / len(waits) == pytest.approx(expected, rel=0.10)
