"""Test data shared by unit tests."""

import time
from typing import Any

from pipeline.envelope import (
    Attempt,
    Decision,
    Envelope,
    Outcome,
    RequestSection,
    Result,
    Signals,
)


def make_signals(**overrides: Any) -> Signals:
    """Signals of a short English one-turn request; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "prompt_tokens": 50,
        "context_class": "short",
        "messages": 1,
        "turns": 1,
        "tools_present": False,
        "tool_loop": False,
        "images_present": False,
        "audio_present": False,
        "language": "en",
        "language_score": 0.99,
        "system_fingerprint": None,
        "expected_output_tokens": 256,
        "load_shape": "balanced",
        "session": "cold",
        "domain": "other",
        "domain_score": 0.9,
        "complexity": "medium",
        "complexity_score": 0.5,
        "embedding": "",
        "encoder": "test",
    }
    return Signals(**{**fields, **overrides})


def make_outcome(**overrides: Any) -> Outcome:
    """The outcome of a request ``r`` that model ``m`` of pool ``p`` answered; ``overrides``
    replace any field."""
    fields: dict[str, Any] = {
        "request_id": "r",
        "decision": "d",
        "model": "m",
        "pool": "p",
        "endpoint": "e",
        "status": "ok",
        "attempts": 1,
        "latency_ms": 1,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cost_usd": 0,
        "dispatched_at": 0,
        "completed_at": 0,
    }
    return Outcome(**{**fields, **overrides})


def make_served(
    request_id: str,
    *,
    tenant: str = "acme",
    decision: str = "code",
    model: str = "big",
    pool: str = "gpu",
    cost: float = 0.001,
    baseline: float = 0.004,
    latency_ms: float = 100.0,
    cache_hit: bool = False,
    failed_attempts: int = 0,
    at: float | None = None,
) -> Envelope:
    """The final envelope of a served request, with its outcome and endpoint attempts."""
    at = time.time() if at is None else at
    attempts = [
        Attempt(
            model=model,
            pool=pool,
            endpoint=f"e{i}",
            status="error",
            error_type="pool_error",
            started_at=at,
            latency_ms=5.0,
        )
        for i in range(failed_attempts)
    ]
    if not cache_hit:
        attempts.append(
            Attempt(
                model=model,
                pool=pool,
                endpoint="e-ok",
                status="ok",
                started_at=at,
                latency_ms=latency_ms,
                ttft_ms=latency_ms / 4,
            )
        )
    outcome = Outcome(
        request_id=request_id,
        decision=decision,
        model=model,
        pool=pool,
        endpoint="cache" if cache_hit else "e-ok",
        status="ok",
        attempts=len(attempts),
        latency_ms=latency_ms,
        ttft_ms=None if cache_hit else latency_ms / 4,
        prompt_tokens=100,
        completion_tokens=50,
        cost_usd=0.0 if cache_hit else cost,
        dispatched_at=at,
        completed_at=at + latency_ms / 1000,
        cache_hit=cache_hit,
        attempt_log=attempts,
        baseline_model="strong",
        baseline_cost_usd=baseline,
    )
    return Envelope(
        request=RequestSection(request_id=request_id, tenant=tenant, created_at=at),
        signals=make_signals(),
        decision=Decision(
            decision=decision,
            candidates=[model, "strong"],
            model=model,
            pool=pool,
            strategy="cache" if cache_hit else "static",
            cache_hit=cache_hit,
        ),
        result=Result(
            status="ok",
            response={"choices": []},
            stage="dispatch",
            completed_at=at + latency_ms / 1000,
        ),
        outcome=outcome,
    )
