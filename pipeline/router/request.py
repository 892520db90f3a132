"""The router's one call per screened request: budgets, the decision, the semantic cache, the
model, in that order, answered as one :data:`RouteResult` that the router stage turns into
messages.

- :class:`Refused`: a budget over its limit rejects the request (first, before anything else), or
  the request cannot be routed (unknown model, no candidate with the context it needs);
- :class:`Blocked`: the matched decision's stricter safety settings block it;
- :class:`Cached`: the decision's cache scope holds an answer to it;
- :class:`Routed`: a model was chosen; the request goes on redacted when the decision says so
  (redaction happens here, once).

A budget that downgrades leaves only the cheapest usable candidate; one that flags only marks the
decision. Every routed request is held against its budgets (:class:`Reservations`) until its
outcome is counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline.envelope import Decision, Envelope, PiiFinding, Usage
from pipeline.policy import Policy
from pipeline.router import cache_entries
from pipeline.router.budgets import OverBudget, Reservation, Reservations, over_budget
from pipeline.router.route import (
    DEFAULT_ANSWER_TOKENS,
    BlockedByDecision,
    RouterRuntime,
    RoutingError,
    decision_spec,
    route,
)
from pipeline.router.semantic_cache import CachedAnswer, SemanticCache
from pipeline.safety.verdict import redact_request

CacheLookup = Literal["hit", "miss"] | None


@dataclass(frozen=True)
class Routed:
    """A model was chosen; ``envelope`` is the request as it goes on: with the PII the decision
    redacts replaced (the same envelope when it redacts nothing)."""

    decision: Decision
    envelope: Envelope
    cache_lookup: CacheLookup = None


@dataclass(frozen=True)
class Cached:
    """The cache holds an answer: ``decision`` says so (strategy ``cache``)."""

    decision: Decision
    answer: CachedAnswer
    cache_lookup: CacheLookup = "hit"


@dataclass(frozen=True)
class Blocked:
    """The safety settings of decision ``decision`` block the request."""

    decision: str
    cache_lookup: CacheLookup = None


@dataclass(frozen=True)
class Refused:
    """An error for the client; ``decision`` is the budget's when a budget rejected it."""

    error_type: str
    message: str
    decision: Decision | None = None
    retry_after_s: float | None = None
    cache_lookup: CacheLookup = None


RouteResult = Routed | Cached | Blocked | Refused


def redacted(env: Envelope, findings: list[PiiFinding]) -> Envelope:
    """``env`` with ``findings`` replaced in its request (``env`` itself when there are none)."""
    if not findings:
        return env
    assert env.request.body is not None
    body = redact_request(env.request.body, findings)
    return env.model_copy(update={"request": env.request.model_copy(update={"body": body})})


@dataclass
class RequestRouter:
    """What the router needs besides the policy to answer a request: its runtime (arms, pools,
    sessions, exploration), the semantic cache, the counted usage and its own reservations."""

    runtime: RouterRuntime
    cache: SemanticCache
    usage: Mapping[str, Usage] = field(default_factory=dict)
    outcome_partitions: Sequence[int] = ()
    reservations: Reservations = field(default_factory=Reservations)

    def route(self, env: Envelope, policy: Policy, at: float, started: float) -> RouteResult:
        """The answer for ``env``: budgets count at ``at``, cached answers live at ``started``."""
        over = over_budget(
            policy.budgets, env.request, self.usage, self.outcome_partitions, at, self.reservations
        )
        strictest = over[0] if over else None
        if strictest is not None and strictest.budget.action == "reject":
            return self.rejected(strictest)
        lookup: CacheLookup = None
        try:
            spec, redact = decision_spec(env, policy)
            config = (
                cache_entries.cache_config(policy, spec) if cache_entries.cacheable(env) else None
            )
            if config is not None:
                scope, key = cache_entries.scope_of(env, spec.name), cache_entries.key_of(env)
                answer = cache_entries.lookup(self.cache, env, scope, key, config, started)
                lookup = "hit" if answer else "miss"
                if answer is not None:
                    return Cached(self.cached(policy, spec.name, answer), answer)
            downgrade = strictest is not None and strictest.budget.action == "downgrade"
            decision = route(env, policy, self.runtime, (spec, redact), downgrade)
        except BlockedByDecision as exc:
            return Blocked(exc.decision)
        except RoutingError as exc:
            return Refused(exc.error_type, str(exc), cache_lookup=lookup)
        onward = redacted(env, redact)
        if config is not None:
            if onward is not env:  # the answer is stored under the request the pool is sent
                scope, key = cache_entries.scope_of(onward, spec.name), cache_entries.key_of(onward)
            decision.cache_ttl_s = config.ttl_s
            decision.cache_scope = scope
            decision.cache_key = key
        if policy.budgets:
            self.reserve(env, policy, decision, at)
        if strictest is not None:
            decision.budget = strictest.budget.name
            decision.budget_action = strictest.budget.action
        return Routed(decision, onward, lookup)

    def rejected(self, over: OverBudget) -> Refused:
        decision = Decision(
            decision="",
            candidates=[],
            model="",
            pool="",
            strategy="budget",
            budget=over.budget.name,
            budget_action="reject",
            policy_version=self.runtime.policy_version,
        )
        return Refused(over.error_type, over.message, decision, round(over.retry_after_s, 3))

    def cached(self, policy: Policy, decision_name: str, answer: CachedAnswer) -> Decision:
        """The decision of a request the cache answers: the model that gave the answer."""
        card = policy.model(answer.model) if answer.model else None
        return Decision(
            decision=decision_name,
            candidates=[answer.model],
            model=answer.model,
            pool=card.pool if card else "",
            strategy="cache",
            cache_hit=True,
            policy_version=self.runtime.policy_version,
        )

    def reserve(self, env: Envelope, policy: Policy, decision: Decision, at: float) -> None:
        """Hold the request's estimated usage against its budgets until its outcome is counted."""
        body, signals = env.request.body, env.signals
        assert body is not None and signals is not None
        answer = min(signals.expected_output_tokens, body.max_tokens or DEFAULT_ANSWER_TOKENS)
        card = policy.model(decision.model)
        held = Reservation(
            request_id=env.request.request_id,
            tokens=signals.prompt_tokens + answer,
            usd=card.price.cost(signals.prompt_tokens, answer),
            at=at,
        )
        self.reservations.reserve(
            policy.budgets, env.request, held, self.usage, self.outcome_partitions
        )
