"""Outcomes: what serving a request cost and how it went, for ``wrp.outcomes`` and the envelope.

One builder for both ways a request is served: by a pool, after the dispatch ladder's climb
(:func:`dispatched`), and from the semantic cache, free (:func:`from_cache`). Either carries the
decision's strongest candidate as the baseline and what it would have charged for the same tokens.
"""

from __future__ import annotations

from typing import Any

from pipeline.envelope import Envelope, Outcome
from pipeline.policy import ModelCard, Policy
from pipeline.pool.dispatcher import PoolCall
from pipeline.pool.ladder import Climb


def _count(usage: object, key: str, default: int) -> int:
    """A token count of a pool's ``usage``, or ``default`` when the pool gave none usable."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else default


def _tokens(call: PoolCall, prompt_tokens: int) -> tuple[int, int]:
    """(prompt, completion) tokens of a pool's answer; the signals' prompt count and no
    completion when the pool did not say."""
    usage = (call.response or {}).get("usage")
    return _count(usage, "prompt_tokens", prompt_tokens), _count(usage, "completion_tokens", 0)


def _outcome(
    env: Envelope,
    baseline: ModelCard | None,
    prompt_tokens: int,
    completion_tokens: int,
    answered: bool,
    dispatched_at: float,
    completed_at: float,
    **served: Any,
) -> Outcome:
    """The fields every outcome shares; ``served`` holds the rest of :class:`Outcome`'s."""
    request = env.request
    return Outcome(
        request_id=request.request_id,
        tenant=request.tenant,
        session_id=request.session_id,
        api_key=request.api_key,
        status="ok" if answered else "error",
        latency_ms=round((completed_at - dispatched_at) * 1000, 3),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        dispatched_at=dispatched_at,
        completed_at=completed_at,
        baseline_model=baseline.name if baseline else None,
        baseline_cost_usd=round(baseline.price.cost(prompt_tokens, completion_tokens), 8)
        if baseline and answered
        else 0.0,
        **served,
    )


def dispatched(
    env: Envelope,
    policy: Policy,
    climb: Climb[PoolCall],
    dispatched_at: float,
    completed_at: float,
) -> Outcome:
    """A pool's answer (or failure) after ``climb``: every call made is counted and paid (a
    call without an answer costs no tokens), the answer's tokens are the last call's."""
    decision, signals = env.decision, env.signals
    assert decision is not None and signals is not None
    cost = gpu_cost = energy = 0.0
    for model, call in climb.calls:
        if call.response is not None:
            cost += policy.model(model).price.cost(*_tokens(call, signals.prompt_tokens))
        gpu_cost += call.gpu_cost_usd
        energy += call.energy_j
    call, card = climb.answer, policy.model(climb.model)
    deadline = env.request.deadline
    return _outcome(
        env,
        policy.strongest(decision.candidates, signals.domain),
        *_tokens(call, signals.prompt_tokens),
        call.response is not None,
        dispatched_at,
        completed_at,
        decision=decision.decision,
        model=card.name,
        pool=card.pool,
        endpoint=call.endpoint,
        error_type=call.error_type,
        attempts=sum(c.attempts for _, c in climb.calls),
        ttft_ms=call.ttft_ms,
        cost_usd=round(cost, 8),
        gpu_cost_usd=round(gpu_cost, 8),
        energy_j=round(energy, 3),
        explored=decision.explored,
        escalated_from=climb.escalated,
        fallback_from=climb.fallback_from,
        attempt_log=[attempt for _, c in climb.calls for attempt in c.log],
        slo_missed=deadline is not None and completed_at > deadline,
        prior=decision.prior,
        context=decision.context,
    )


def from_cache(
    env: Envelope,
    policy: Policy,
    decision: str,
    candidates: list[str],
    model: str,
    pool: str,
    response: dict[str, Any],
    started: float,
    finished: float,
) -> Outcome:
    """A cached answer: no endpoint, no attempt, no cost; tokens as the cached answer counts
    them."""
    usage = response.get("usage") or {}
    return _outcome(
        env,
        policy.strongest(candidates, env.signals and env.signals.domain),
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        True,
        started,
        finished,
        decision=decision,
        model=model,
        pool=pool,
        endpoint="cache",
        attempts=0,
        cost_usd=0.0,
        cache_hit=True,
    )
