"""Pools that fail on purpose: every failure ends in a retry, a fallback or a clear error with an
outcome row, and the partition keeps moving; dispatch publishes pool state."""

from __future__ import annotations

import httpx
import pytest

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import POOL_STATE
from pipeline.bus.codec import decode
from pipeline.client import replay
from pipeline.envelope import PoolState, now
from pipeline.pool.scrape import parse_vllm_metrics
from tests.integration.conftest import run
from tests.integration.helpers import analytics_row, eventually, read_topic, request

pytestmark = pytest.mark.integration


def serve(stack, *requests):
    answers = run(replay(stack.settings.broker, list(requests), rate=0, timeout_s=60))
    return [answers[r.request_id] for r in requests]


@pytest.mark.parametrize(
    ("pool", "error_type", "attempts"),
    [
        ("err500", "pool_error", 2),
        ("err429", "pool_overloaded", 1),
        ("garbage", "pool_bad_response", 1),
        ("half", "pool_incomplete", 1),
        ("hang", "pool_timeout", 1),
        ("rejects", "pool_rejected", 1),  # a 4xx is not retried
    ],
)
def test_a_failing_endpoint_ends_in_a_clear_error_and_an_outcome_row(
    stack, pool, error_type, attempts
):
    (answer,) = serve(stack, request("hello", model=f"wrp-fault-{pool}"))
    assert answer.result.status == "error"
    assert answer.result.error.type == error_type, answer.result.error
    assert answer.result.error.message
    assert answer.outcome.status == "error" and answer.outcome.attempts == attempts
    row = eventually(lambda: analytics_row(stack, answer.request.request_id), what="row")
    assert row["status"] == "error" and row["error_type"] == error_type


def test_a_retryable_failure_is_retried_on_another_endpoint(stack):
    (answer,) = serve(stack, request("hello", model="wrp-fault-retry"))
    assert answer.result.status == "ok"
    assert answer.outcome.attempts == 2 and answer.outcome.endpoint.endswith("/ok")


def test_a_failed_pool_falls_back_to_the_decisions_fallback_model(stack):
    (answer,) = serve(stack, request("faultdrill: say hello"))
    assert answer.decision.model == "wrp-fault-err500"
    assert answer.decision.fallback == "wrp-small-8b"
    assert answer.result.status == "ok"
    assert answer.outcome.model == "wrp-small-8b"
    assert answer.outcome.fallback_from == "wrp-fault-err500"
    assert answer.outcome.attempts == 3  # two on the failing pool, one on the fallback


def test_the_circuit_opens_and_the_partition_keeps_moving(stack):
    first = serve(
        stack, request("a", model="wrp-fault-breaker"), request("b", model="wrp-fault-breaker")
    )
    assert [a.result.error.type for a in first] == ["pool_error", "pool_error"]
    (third,) = serve(stack, request("c", model="wrp-fault-breaker"))
    assert third.result.error.type == "pool_unavailable"
    assert "open circuit" in third.result.error.message and third.outcome.attempts == 0
    (healthy,) = serve(stack, request("tell me about owls"))
    assert healthy.result.status == "ok"

    def breaker_state() -> PoolState | None:
        rows = [
            decode(r.value, PoolState) for r in run(read_topic(stack.settings.broker, POOL_STATE))
        ]
        return next(
            (r for r in reversed(rows) if r.pool == "breaker" and r.circuit == "open"), None
        )

    state = eventually(breaker_state, what="open circuit on wrp.pool-state")
    assert state.errors >= 2 and state.error_rate > 0


def test_dispatch_publishes_pool_state_per_endpoint(stack):
    streamed = [request(f"name a colour, number {i}", model="wrp-small-8b") for i in range(4)]
    for section in streamed:  # a streamed call measures the time to its first token
        section.body.stream = True
    serve(stack, *streamed)

    def small_pool() -> list[PoolState]:
        rows = [
            decode(r.value, PoolState) for r in run(read_topic(stack.settings.broker, POOL_STATE))
        ]
        timed = [r for r in rows if r.pool == "small" and r.ttft_ms_ewma is not None]
        return [r for r in timed if r.requests > 0]

    rows = eventually(small_pool, what="small pool state with a time to first token")
    latest = rows[-1]
    assert latest.instance and latest.capacity == 64
    assert latest.latency_ms_ewma >= latest.ttft_ms_ewma > 0
    assert latest.updated_at <= now()


def test_a_request_past_its_deadline_is_not_sent(stack):
    (answer,) = serve(stack, request("hello", deadline=now() - 1))
    assert answer.result.error.type == "deadline_exceeded"
    assert answer.outcome is None


def test_a_full_pool_pauses_consumption_and_every_request_is_still_answered(stack):
    def pauses() -> float:
        port = stack.settings.stage_port("dispatch")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        return parse_vllm_metrics(text).get("wrp_stage_pauses", 0.0)

    before = pauses()
    answers = serve(stack, *[request(f"queue {i}", model="wrp-fault-narrow") for i in range(5)])
    assert [a.result.status for a in answers] == ["ok"] * 5
    assert pauses() > before  # one slot, five requests: dispatch paused its partitions


def rows_of(stack, name: str) -> list[dict]:
    result = query_analytics(stack.settings, name, {"since": "1h"})
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def test_the_analytics_report_failed_attempts_fallbacks_and_gpu_use(stack):
    # the earlier tests failed on err500 and fell back from it to wrp-small-8b
    streamed = request("hi, streamed", model="wrp-small-8b")
    streamed.body.stream = True
    serve(stack, request("hi", model="wrp-small-8b"), streamed)

    def models() -> list[dict] | None:
        rows = rows_of(stack, "models")
        fallbacks = sum(r["fallbacks"] for r in rows if r["pool"] == "small")
        return rows if fallbacks >= 1 else None

    rows = eventually(models, what="the fallback in analytics")
    small = [r for r in rows if r["pool"] == "small"]
    assert all(r["gpu_cost_usd"] > 0 and r["energy_j"] > 0 for r in small)

    def timed_attempts() -> list[dict] | None:
        """Per endpoint; only a streamed call has a time to first token, so an endpoint of
        the small pool that served none has no TTFT."""
        rows = rows_of(stack, "pools")
        small = [r for r in rows if r["pool"] == "small" and r["ttft_p50_ms"] is not None]
        return rows if small else None

    attempts = eventually(timed_attempts, what="a streamed attempt of the small pool in analytics")
    failing = [r for r in attempts if r["pool"] == "err500"]
    assert failing and all(r["errors"] == r["attempts"] for r in failing)
    assert all("pool_error" in r["top_errors"] for r in failing)
    timed = [r for r in attempts if r["pool"] == "small" and r["ttft_p50_ms"] is not None]
    assert all(r["ttft_p50_ms"] <= r["latency_p50_ms"] for r in timed)
