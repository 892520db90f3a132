"""A Mooncake trace through the whole pipeline: synthesised prompts share the text of shared
trace blocks, so the simulated endpoint's prefix cache hits, and pool state reflects the calls."""

from __future__ import annotations

import httpx
import pytest

from pipeline.client import replay
from pipeline.policy import load_policy
from pipeline.pool.scrape import parse_vllm_metrics
from pipeline.pool.sim import traces
from pipeline.settings import DataMissing
from tests.integration.conftest import run

pytestmark = pytest.mark.integration


def test_a_mooncake_replay_is_answered_and_hits_the_prefix_cache(stack):
    try:
        traced = traces.load_trace("mooncake", 12)
    except DataMissing as exc:
        pytest.skip(str(exc))
    (endpoint,) = load_policy(stack.settings.policy).pool("long").endpoints
    before = parse_vllm_metrics(httpx.get(f"{endpoint.url}/metrics").text)
    requests = [traces.trace_request_section(r, model="wrp-long-128k", run="it") for r in traced]
    schedule = [r.arrival_s / 1000 for r in traced]
    answers = run(replay(stack.settings.broker, requests, 0, 120, schedule=schedule))
    assert len(answers) == len(requests)
    for request in requests:
        answer = answers[request.request_id]
        assert answer.result.status == "ok", answer.result.error
        usage = answer.result.response["usage"]
        assert usage["completion_tokens"] == request.body.max_tokens
        assert answer.outcome.ttft_ms is not None and answer.outcome.energy_j > 0
    after = parse_vllm_metrics(httpx.get(f"{endpoint.url}/metrics").text)
    queried = after["vllm:prefix_cache_queries"] - before.get("vllm:prefix_cache_queries", 0)
    hits = after["vllm:prefix_cache_hits"] - before.get("vllm:prefix_cache_hits", 0)
    prompt_tokens = sum(traced_request.prompt_tokens for traced_request in traced)
    assert queried >= prompt_tokens * 0.9
    assert hits >= 512 * (len(traced) - 1) * 0.9  # at least the shared first block, each time
