"""The vllm-sr-sim adapter: its figures behave as a queueing model's should."""

import numpy as np
import pytest

pytest.importorskip(
    "fleet_sim",
    reason="vllm-sr-sim (import name fleet_sim) is not installed: pip install -e '.[dev]'",
)

from pipeline.pool.sim import peer_sim

RNG = np.random.default_rng(7)
PROMPTS = RNG.integers(50, 3000, 400)
OUTPUTS = RNG.integers(10, 400, 400)


def test_more_gpus_never_give_a_worse_p99_or_a_higher_utilisation():
    figures = [peer_sim.analytical(PROMPTS, OUTPUTS, 40.0, "A100", n) for n in range(1, 8)]
    p99 = [f.p99_ttft_s for f in figures]
    assert p99 == sorted(p99, reverse=True)
    assert p99[0] == float("inf")  # one GPU cannot carry 40 requests/s by its model
    assert [f.utilisation for f in figures] == sorted(f.utilisation for f in figures)[::-1]
    assert figures[3].cost_per_hour == 4 * peer_sim.PROFILE_CONSTANTS["A100"].cost_per_hour


@pytest.mark.parametrize("gpu", ["A10G", "A100", "H100"])
@pytest.mark.parametrize("slo_s", [0.1, 0.5])
def test_minimum_fleet_meets_the_slo_by_its_own_model(gpu, slo_s):
    first = peer_sim.analytical(PROMPTS, OUTPUTS, 60.0, gpu, 1, slo_ttft_s=slo_s)
    sized = peer_sim.analytical(PROMPTS, OUTPUTS, 60.0, gpu, first.min_gpus, slo_ttft_s=slo_s)
    assert sized.p99_wait_s <= slo_s
    assert sized.utilisation <= peer_sim.RHO_MAX
    assert sized.min_gpus == first.min_gpus  # the answer does not depend on the fleet asked about

    planned = peer_sim.optimize(PROMPTS, OUTPUTS, 60.0, gpu, slo_ttft_s=slo_s)
    assert planned.slo_met and planned.p99_ttft_s <= slo_s
    assert planned.cost_per_hour == pytest.approx(
        planned.min_gpus * peer_sim.PROFILE_CONSTANTS[gpu].cost_per_hour
    )


def test_a_longer_context_window_means_fewer_slots_and_more_gpus():
    short = peer_sim.analytical(PROMPTS, OUTPUTS, 200.0, "A100", 1, max_ctx=4096)
    long = peer_sim.analytical(PROMPTS, OUTPUTS, 200.0, "A100", 1, max_ctx=32768)
    assert short.slots_per_gpu > long.slots_per_gpu
    assert short.min_gpus < long.min_gpus


def test_requests_longer_than_the_context_window_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        peer_sim.analytical(PROMPTS, OUTPUTS, 1.0, "A100", 1, max_ctx=2048)
    with pytest.raises(ValueError, match="A10G"):
        peer_sim.gpu_profile("A10G", model="llama-3.1-8b")


def test_derived_profile_uses_the_model_and_costs_tp_gpus():
    derived = peer_sim.profile_constants("A100", model="llama-3.1-8b", tp=1)
    assert derived.name.startswith("A100-SXM/Llama-3.1-8B")
    assert derived.cost_per_hour == peer_sim.PROFILE_CONSTANTS["A100"].cost_per_hour
    assert peer_sim.profile_constants("A100", "llama-3.1-70b", 8).cost_per_hour == pytest.approx(
        8 * derived.cost_per_hour
    )


def test_request_level_simulator_default_balancer_fills_instance_zero_first():
    """Pins the peer behaviour this adapter's notes describe (ties of least_queue go to 0)."""
    default = peer_sim.simulate(PROMPTS, OUTPUTS, 20.0, "A100", 3, n_requests=1500)
    spread = peer_sim.simulate(
        PROMPTS, OUTPUTS, 20.0, "A100", 3, n_requests=1500, balancer="round_robin"
    )
    assert default.completed == spread.completed == 1500
    assert default.requests_per_instance == (1500, 0, 0)
    assert spread.requests_per_instance == (500, 500, 500)
