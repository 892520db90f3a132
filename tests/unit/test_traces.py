"""Serving traces: loading, prompt synthesis, time scaling and the request sections they make."""

import pytest

from pipeline.envelope import RequestSection
from pipeline.pool.blocks import estimate_tokens, text_block_hashes
from pipeline.pool.sim import traces
from pipeline.pool.sim.traces import TraceRequest
from pipeline.settings import DataMissing

ROWS = 300


def mooncake(index: int, blocks: tuple[int, ...], tokens: int) -> TraceRequest:
    return TraceRequest("mooncake", index, 0.0, tokens, 10, blocks, traces.MOONCAKE_BLOCK)


@pytest.fixture(scope="module", params=sorted(traces.TRACES))
def loaded(request) -> list[TraceRequest]:
    try:
        return traces.load_trace(request.param, limit=ROWS)
    except DataMissing as exc:
        pytest.skip(f"shared data absent, traces not loaded: {exc}")


def test_traces_load_in_arrival_order_from_time_zero(loaded):
    assert len(loaded) == ROWS
    assert loaded[0].arrival_s == 0
    arrivals = [r.arrival_s for r in loaded]
    assert arrivals == sorted(arrivals)
    assert all(r.prompt_tokens > 0 and r.output_tokens > 0 for r in loaded)
    summary = traces.summarise(loaded)
    assert summary.requests == ROWS and summary.mean_rate > 0
    assert summary.prompt_tokens[1] <= summary.prompt_tokens[2]


def test_synthesised_prompts_have_the_traced_token_count(loaded):
    for request in loaded[:20]:
        prompt = traces.synthesise_prompt(request)
        assert estimate_tokens(prompt) == request.prompt_tokens
        assert prompt == traces.synthesise_prompt(request)


def test_request_sections_carry_prompt_length_and_ids(loaded):
    sections = [traces.trace_request_section(r, run="t") for r in loaded[:20]]
    assert len({s.request_id for s in sections}) == len(sections)
    for request, section in zip(loaded, sections, strict=False):
        section = RequestSection.model_validate_json(section.model_dump_json())
        assert section.body.max_tokens == request.output_tokens
        assert estimate_tokens(section.body.messages[0].content) == request.prompt_tokens


def test_mooncake_turns_share_a_session_and_azure_has_none():
    first = mooncake(0, (0, 7, 8), 1300)
    second = mooncake(1, (0, 7, 9, 10), 1800)
    other = mooncake(2, (0, 11), 900)
    session = [traces.trace_request_section(r).session_id for r in (first, second, other)]
    assert session[0] == session[1] != session[2]
    azure = TraceRequest("azure-conv", 0, 0.0, 100, 10)
    assert traces.trace_request_section(azure).session_id is None


def test_shared_mooncake_blocks_give_a_shared_text_prefix_and_shared_hashes():
    first = traces.synthesise_prompt(mooncake(0, (0, 7, 8), 1300))
    second = traces.synthesise_prompt(mooncake(1, (0, 7, 9), 1400))
    shared = 2 * traces.MOONCAKE_BLOCK
    assert first.split()[:shared] == second.split()[:shared]
    assert first.split()[shared:] != second.split()[shared:]
    a, b = text_block_hashes(first), text_block_hashes(second)
    shared_blocks = shared // 16
    assert a[:shared_blocks] == b[:shared_blocks] and a[shared_blocks] != b[shared_blocks]


def test_engine_hashes_share_only_what_the_trace_shares():
    a = traces.engine_block_hashes(mooncake(0, (0, 7, 8), 1536))
    b = traces.engine_block_hashes(mooncake(1, (0, 7, 9), 1536))
    assert a[:64] == b[:64] and a[64] != b[64]
    azure = [TraceRequest("azure-code", i, 0.0, 1000, 10) for i in range(2)]
    x, y = (traces.engine_block_hashes(r) for r in azure)
    assert len(x) == 1000 // 16 and not set(x) & set(y)
    assert traces.synthesise_prompt(azure[0]) != traces.synthesise_prompt(azure[1])


def test_speed_compresses_arrivals_and_rate_targeting_hits_the_rate():
    requests = [TraceRequest("azure-conv", i, t, 10, 10) for i, t in enumerate([0, 1, 3, 8])]
    assert traces.mean_rate(requests) == pytest.approx(3 / 8)
    assert [r.arrival_s for r in traces.rescale(requests, speed=4)] == [0, 0.25, 0.75, 2]
    assert traces.mean_rate(traces.rescale(requests, rate_per_s=6)) == pytest.approx(6)
    with pytest.raises(ValueError, match="exactly one"):
        traces.rescale(requests, speed=2, rate_per_s=1)


def test_prefix_reuse_share_counts_tokens_in_blocks_seen_before():
    requests = [mooncake(0, (0, 7), 1024), mooncake(1, (0, 7, 8), 1100)]
    assert traces.reused_prompt_share(requests) == pytest.approx(1024 / 2124)


def test_unknown_trace_names_the_known_ones(tmp_path):
    with pytest.raises(traces.UnknownTrace, match="azure-conv, azure-code, mooncake"):
        traces.load_trace("sharegpt")
    with pytest.raises(DataMissing, match="WRP_DATA_DIR"):
        traces.load_trace("mooncake", data_dir=tmp_path)
