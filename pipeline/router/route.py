"""Routing one request: safety pin, explicit model or decision -> fitting candidates -> pools
that can take it -> strategy -> sticky session -> exploration bounds -> :class:`Decision`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.envelope import (
    Decision,
    Envelope,
    PiiFinding,
    PoolState,
    RouterState,
    router_state_key,
)
from pipeline.policy import DecisionSpec, ModelCard, Policy
from pipeline.router.decisions import fitting_models, match_decision, rule_values
from pipeline.router.exploration import ExplorationGovernor
from pipeline.router.pool_filter import usable
from pipeline.router.sticky import SessionTurn, hold
from pipeline.router.strategies import STRATEGIES
from pipeline.router.strategies.base import SelectionContext
from pipeline.safety.verdict import tighten
from pipeline.sessions import SessionMemory

EXPLICIT = "explicit"
#: Decision and strategy name of requests the safety verdict sends to the safe model.
SAFETY = "safety"
#: Answer budget assumed when a request sets no max_tokens.
DEFAULT_ANSWER_TOKENS = 512
#: How long a router instance remembers a session's model at most (the policy's
#: ``router.sticky.idle_s`` decides when it stops counting).
SESSION_MEMORY_S = 86400.0


class RoutingError(Exception):
    """The request cannot be routed; ``error_type`` is what the client sees."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class BlockedByDecision(Exception):
    """The matched decision's stricter safety settings block the request."""

    def __init__(self, decision: str) -> None:
        super().__init__(f"blocked by the safety settings of decision {decision!r}")
        self.decision = decision


@dataclass
class RouterRuntime:
    """What a router instance knows besides the policy: learned arms, pool health, its
    exploration bookkeeping and random source, the model each of its sessions was last routed
    to, and which policy version it runs."""

    arms: Mapping[str, RouterState] = field(default_factory=dict)
    pools: Mapping[str, PoolState] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    exploration: ExplorationGovernor = field(default_factory=ExplorationGovernor)
    sessions: SessionMemory[SessionTurn] = field(
        default_factory=lambda: SessionMemory(SESSION_MEMORY_S)
    )
    policy_version: str = ""


def pinned_spec(policy: Policy, envelope: Envelope, action: str) -> DecisionSpec | None:
    """The decision of a request that is not routed by rules: safety pin or explicit model."""
    body = envelope.request.body
    assert body is not None
    if action == "route_safe" and policy.safety.safe_model:
        return DecisionSpec(name=SAFETY, models=[policy.safety.safe_model], strategy="static")
    if body.model != "auto":
        known = [m.name for m in policy.models]
        if body.model not in known:
            raise RoutingError(
                "model_not_found",
                f"unknown model {body.model!r}; use 'auto' or one of: {', '.join(known)}",
            )
        return DecisionSpec(name=EXPLICIT, models=[body.model], strategy="static")
    return None


def decision_spec(envelope: Envelope, policy: Policy) -> tuple[DecisionSpec, list[PiiFinding]]:
    """The decision a request falls under, after the matched decision's safety settings had
    their say, and the PII findings those settings redact."""
    safety = envelope.safety
    action = safety.action if safety else "allow"
    pinned = pinned_spec(policy, envelope, action)
    if pinned is not None:
        return pinned, []
    spec = match_decision(policy, rule_values(envelope))
    if spec.safety is None or safety is None:
        return spec, []
    action, findings = tighten(safety, spec.safety)
    if action == "block":
        raise BlockedByDecision(spec.name)
    redact = findings if action == "redact" else []
    return pinned_spec(policy, envelope, action) or spec, redact


def fallback_of(
    chosen: ModelCard, fitting: list[ModelCard], scores: dict[str, float]
) -> str | None:
    """The best-scored other candidate, preferring one served by another pool."""
    others = [card for card in fitting if card.name != chosen.name]
    if not others:
        return None
    best = max(others, key=lambda c: (c.pool != chosen.pool, scores.get(c.name, float("-inf"))))
    return best.name


def route(
    envelope: Envelope,
    policy: Policy,
    runtime: RouterRuntime,
    matched: tuple[DecisionSpec, list[PiiFinding]] | None = None,
    downgrade: bool = False,
) -> Decision:
    """The decision for one screened request (raises RoutingError or BlockedByDecision).
    ``matched`` is :func:`decision_spec`'s answer when the caller already has it; ``downgrade``
    (a budget reached) leaves only the cheapest usable candidate and overrides the session's
    stickiness."""
    body, signals = envelope.request.body, envelope.signals
    assert body is not None and signals is not None
    spec, redact = matched or decision_spec(envelope, policy)
    answer_budget = body.max_tokens or DEFAULT_ANSWER_TOKENS
    needed = signals.prompt_tokens + answer_budget
    fitting = fitting_models(policy, spec.models, needed)
    if not fitting:
        raise RoutingError(
            "context_length_exceeded",
            f"the request needs ~{needed} tokens (prompt {signals.prompt_tokens} + answer "
            f"budget); no candidate of decision {spec.name!r} has that context: shorten the "
            "prompt or lower max_tokens",
        )
    router = policy.router
    candidates, skipped = usable(
        fitting, runtime.pools, router.pool_aware, envelope.request.ttft_budget_ms
    )
    if downgrade and len(candidates) > 1:
        cheapest = min(
            candidates, key=lambda card: card.price.cost(signals.prompt_tokens, answer_budget)
        )
        skipped = {**skipped, **{c.name: "budget" for c in candidates if c is not cheapest}}
        candidates = [cheapest]
    tenant = router.tenants.get(envelope.request.tenant)
    cost_weight = next(
        w
        for w in (tenant and tenant.cost_weight, spec.cost_weight, router.cost_weight)
        if w is not None
    )
    ctx = SelectionContext(
        policy=policy,
        decision=spec,
        candidates=candidates,
        domain=signals.domain,
        complexity=signals.complexity,
        embedding=signals.embedding_vector() if signals.embedding else None,
        prompt_tokens=signals.prompt_tokens,
        answer_tokens=min(signals.expected_output_tokens, answer_budget),
        answer_budget=answer_budget,
        cost_weight=cost_weight,
        arms=runtime.arms,
        rng=runtime.rng,
    )
    selection = STRATEGIES[spec.strategy](ctx)
    scope = envelope.request.session_scope
    previous = runtime.sessions.get(scope) if scope else None
    clock = time.monotonic()
    estimates = selection.estimates
    sticky = spec.sticky or router.sticky
    if previous is not None and sticky.enabled and not estimates:  # static, cascade: E[q] - lc
        estimates = {card.name: ctx.utility(card, ctx.mean(card)) for card in candidates}
    stick = hold(
        previous,
        selection.model,
        candidates,
        estimates,
        signals.prompt_tokens,
        cost_weight,
        sticky,
        clock,
        forced=downgrade,
    )
    model = stick.model
    if not stick.stays:
        model = runtime.exploration.govern(
            spec.name,
            selection.model,
            selection.greedy,
            candidates,
            spec.exploration or router.exploration,
            frozen=tenant is not None and not tenant.explore,
            rng=runtime.rng,
        )
    if scope:
        cached = int(signals.prompt_tokens + ctx.expected_answer(model))
        runtime.sessions.put(scope, SessionTurn(model.name, cached, clock))
    return Decision(
        decision=spec.name,
        candidates=[card.name for card in fitting],
        model=model.name,
        pool=model.pool,
        strategy=spec.strategy,
        scores=selection.scores,
        skipped=skipped,
        redact=sorted({f.entity for f in redact}),
        explored=not stick.sticky and model.name != selection.greedy.name,
        sticky=stick.sticky,
        switched_from=stick.previous if stick.previous != model.name else None,
        ladder=[name for name in selection.ladder if name != model.name],
        fallback=fallback_of(model, fitting, selection.scores),
        reasoning=spec.reasoning and model.reasoning,
        context=selection.context,
        prior=round(selection.prior.get(model.name, ctx.prior(model)), 4),
        policy_version=runtime.policy_version,
        state_version=sum(
            arm.version
            for card in fitting
            if (arm := runtime.arms.get(router_state_key(spec.name, card.name)))
        ),
    )
