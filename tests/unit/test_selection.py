"""Endpoint selection policies, circuit breaker and placement inside a pool."""

import asyncio
from collections import Counter

import pytest

from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.policy import Pool, SelectionConfig
from pipeline.pool.blocks import BLOCK_SIZE, expand_trace_blocks, text_block_hashes
from pipeline.pool.circuit import CircuitBreaker
from pipeline.pool.endpoints import PoolEndpoints
from pipeline.pool.selection import NoEndpoint, RequestShape, build_selector
from pipeline.pool.selection.base import EndpointState
from pipeline.pool.selection.prefix_affinity import PrefixAffinity
from pipeline.pool.shape import request_shape
from tests.unit.factories import make_signals

URLS = [f"http://e{i}" for i in range(4)]


def shape(key: str = "r", blocks: tuple[int, ...] = (), prompt: int = 100) -> RequestShape:
    return RequestShape(key=key, prompt_tokens=prompt, output_tokens=50, blocks=blocks)


def states(**loads: int) -> list[EndpointState]:
    return [EndpointState(url=u, in_flight=loads.get(u[-2:], 0)) for u in URLS]


def select(policy: str, endpoints, request=None, **config) -> str:
    selector = build_selector(SelectionConfig(policy=policy, **config))
    return selector.select_endpoint(request or shape(), endpoints).endpoint


def test_round_robin_cycles_through_every_endpoint():
    selector = build_selector(SelectionConfig(policy="round_robin"))
    picks = [selector.select_endpoint(shape(), states()).endpoint for _ in range(8)]
    assert Counter(picks) == {u: 2 for u in URLS}


def test_least_outstanding_picks_the_idlest():
    assert select("least_outstanding", states(e0=3, e1=1, e2=2, e3=5)) == "http://e1"


def test_power_of_two_never_picks_the_busiest_of_two_sampled():
    selector = build_selector(SelectionConfig(policy="power_of_two"))
    two = [EndpointState("a", in_flight=9), EndpointState("b", in_flight=0)]
    assert {selector.select_endpoint(shape(), two).endpoint for _ in range(20)} == {"b"}


def test_prefix_affinity_keeps_a_prefix_on_one_endpoint_and_spreads_prefixes():
    conversation = expand_trace_blocks([0, 7, 8], 1536, 512)
    picks = {select("prefix_affinity", states(), shape(f"turn{i}", conversation)) for i in range(5)}
    assert len(picks) == 1
    spread = {
        select("prefix_affinity", states(), shape("x", expand_trace_blocks([0, i], 1024, 512)))
        for i in range(1, 60)
    }
    assert spread == set(URLS)


def chat(*messages: dict, prompt_tokens: int = 50) -> Envelope:
    body = ChatRequest(messages=list(messages))
    return Envelope(
        request=RequestSection(body=body), signals=make_signals(prompt_tokens=prompt_tokens)
    )


def test_request_prefix_blocks_are_shared_exactly_as_far_as_prompts_agree():
    system = {"role": "system", "content": "policy " * 2000}
    a = request_shape(chat(system, {"role": "user", "content": "question one " * 500}))
    b = request_shape(chat(system, {"role": "user", "content": "other words " * 500}))
    shared = 2000 // BLOCK_SIZE
    assert a.blocks[:shared] == b.blocks[:shared]
    assert all(x != y for x, y in zip(a.blocks[shared:], b.blocks[shared:], strict=True))
    assert a.prompt_tokens == 3000 and len(a.blocks) == 3000 // BLOCK_SIZE
    short = request_shape(chat({"role": "user", "content": "hi"}, prompt_tokens=9))
    assert (short.blocks, short.prompt_tokens) == ((), 9)


def test_prefix_affinity_spills_to_a_neighbour_over_the_load_bound():
    blocks = text_block_hashes("word " * 200)
    home = select("prefix_affinity", states(), shape("a", blocks))
    busy = [EndpointState(u, in_flight=10 if u == home else 0) for u in URLS]
    spilled = select("prefix_affinity", busy, shape("a", blocks))
    assert spilled != home
    # within the bound (c * (total + 1) / n) the home endpoint keeps it
    near = [EndpointState(u, in_flight=1) for u in URLS]
    assert select("prefix_affinity", near, shape("a", blocks)) == home


def test_prefix_affinity_key_ignores_blocks_past_the_affinity_length():
    selector = PrefixAffinity(affinity_tokens=1024)
    short = expand_trace_blocks([0, 5], 1024, 512)
    longer = expand_trace_blocks([0, 5, 6, 7], 2048, 512)
    assert selector.key_of(shape("a", short)) == selector.key_of(shape("b", longer))


def test_kv_aware_prefers_short_queues_free_kv_and_prefix_hits():
    endpoints = [
        EndpointState("full", waiting=8, running=30, kv_usage=0.95, prefix_hit_rate=0.1),
        EndpointState("free", waiting=0, running=10, kv_usage=0.30, prefix_hit_rate=0.1),
    ]
    assert select("kv_aware", endpoints) == "free"
    tied = [
        EndpointState("cold", waiting=0, running=5, kv_usage=0.5, prefix_hit_rate=0.0),
        EndpointState("warm", waiting=0, running=5, kv_usage=0.5, prefix_hit_rate=0.8),
    ]
    assert select("kv_aware", tied) == "warm"


def test_context_length_pools_split_at_the_boundary_and_spill_long():
    endpoints = [EndpointState("s", tier="short"), EndpointState("l", tier="long")]
    config = {"boundary_tokens": 4096}
    assert select("context_length", endpoints, shape(prompt=1000), **config) == "s"
    assert select("context_length", endpoints, shape(prompt=9000), **config) == "l"
    only_long = [EndpointState("l", tier="long")]
    assert select("context_length", only_long, shape(prompt=1000), **config) == "l"
    with pytest.raises(NoEndpoint, match="long-context"):
        select("context_length", endpoints[:1], shape(prompt=9000), **config)


def test_disaggregated_places_prefill_and_decode_on_their_roles():
    endpoints = [EndpointState("p", role="prefill"), EndpointState("d", role="decode")]
    placement = build_selector(SelectionConfig(policy="disaggregated")).select_endpoint(
        shape(), endpoints
    )
    assert (placement.prefill, placement.endpoint) == ("p", "d")


def test_circuit_opens_after_failures_and_closes_after_a_good_probe():
    clock = [0.0]
    circuit = CircuitBreaker(failures=2, open_s=5, clock=lambda: clock[0])
    circuit.on_failure()
    assert circuit.allows()
    circuit.on_failure()
    assert circuit.state == "open" and not circuit.allows()
    clock[0] = 6
    assert circuit.state == "half_open" and circuit.allows()
    circuit.on_send()
    assert not circuit.allows()  # one probe at a time
    circuit.on_failure()
    assert circuit.state == "open"
    clock[0] = 12
    circuit.on_send()
    circuit.on_success()
    assert circuit.state == "closed"


def pool(**extra) -> Pool:
    return Pool.model_validate(
        {"name": "p", "endpoints": [{"url": "http://a"}, {"url": "http://b"}], **extra}
    )


def test_placement_waits_for_a_free_slot_at_the_cap():
    async def scenario() -> list[str]:
        endpoints = PoolEndpoints(pool(max_in_flight=1))
        first = await endpoints.place(shape(), [], 1)
        second = await endpoints.place(shape(), [], 1)
        assert {first.endpoint, second.endpoint} == {"http://a", "http://b"}
        waiter = asyncio.create_task(endpoints.place(shape(), [], 5))
        await asyncio.sleep(0.05)
        assert endpoints.full and not waiter.done()
        await endpoints.release(first.endpoint, ok=True, ttft_ms=10, latency_ms=20)
        third = await waiter
        assert not endpoints.full
        with pytest.raises(NoEndpoint, match="in-flight cap"):
            await endpoints.place(shape(), [], 0.05)
        return [third.endpoint]

    assert asyncio.run(scenario()) == ["http://a"]


def test_placement_skips_open_circuits_and_says_when_all_are_open():
    async def scenario() -> None:
        endpoints = PoolEndpoints(pool(circuit={"failures": 1, "open_s": 60}))
        first = await endpoints.place(shape(), [], 1)
        await endpoints.release(first.endpoint, ok=False)
        second = await endpoints.place(shape(), [], 1)
        assert second.endpoint != first.endpoint
        await endpoints.release(second.endpoint, ok=False)
        with pytest.raises(NoEndpoint, match="open circuit"):
            await endpoints.place(shape(), [], 1)
        rows = {r.endpoint: r for r in endpoints.pool_states("i1")}
        assert rows["http://a"].circuit == "open" and rows["http://a"].errors == 1
        assert rows["http://a"].key == "p/http://a/i1"

    asyncio.run(scenario())


def test_pool_layouts_are_checked():
    with pytest.raises(ValueError, match="tier: short and tier: long"):
        pool(selection={"policy": "context_length", "boundary_tokens": 4096})
    with pytest.raises(ValueError, match="boundary_tokens"):
        SelectionConfig(policy="context_length")
    with pytest.raises(ValueError, match="role: prefill and decode"):
        pool(selection={"policy": "disaggregated"})
