"""Routing one request: explicit model or decision -> fitting candidates -> strategy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.envelope import Decision, Envelope, RouterState
from pipeline.policy import Policy
from pipeline.router.decisions import fitting_models, match_decision, rule_values
from pipeline.router.selection import select_static, select_thompson

EXPLICIT = "explicit"
#: Decision and strategy name of requests the safety verdict sends to the safe model.
SAFETY = "safety"
#: Answer budget assumed when a request sets no max_tokens.
DEFAULT_ANSWER_TOKENS = 512


class RoutingError(Exception):
    """The request cannot be routed; ``error_type`` is what the client sees."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def route(
    envelope: Envelope,
    policy: Policy,
    state: Mapping[str, RouterState],
    rng: np.random.Generator,
) -> Decision:
    body, signals = envelope.request.body, envelope.signals
    assert body is not None and signals is not None
    needed = signals.prompt_tokens + (body.max_tokens or DEFAULT_ANSWER_TOKENS)
    known = [m.name for m in policy.models]
    safety = envelope.safety
    if safety is not None and safety.action == "route_safe" and policy.safety.safe_model:
        name, candidates, strategy = SAFETY, [policy.safety.safe_model], SAFETY
    elif body.model != "auto":
        if body.model not in known:
            raise RoutingError(
                "model_not_found",
                f"unknown model {body.model!r}; use 'auto' or one of: {', '.join(known)}",
            )
        name, candidates, strategy = EXPLICIT, [body.model], EXPLICIT
    else:
        spec = match_decision(policy, rule_values(envelope))
        name, candidates, strategy = spec.name, spec.models, spec.strategy
    fitting = fitting_models(policy, candidates, needed)
    if not fitting:
        raise RoutingError(
            "context_length_exceeded",
            f"the request needs ~{needed} tokens (prompt {signals.prompt_tokens} + answer "
            f"budget); no candidate of decision {name!r} has that context: shorten the prompt or "
            "lower max_tokens",
        )
    if strategy == "thompson":
        selection = select_thompson(name, fitting, state, policy.router.thompson, rng)
    else:
        selection = select_static(fitting)
    return Decision(
        decision=name,
        candidates=[card.name for card in fitting],
        model=selection.model.name,
        pool=selection.model.pool,
        strategy=strategy,
        scores=selection.scores,
    )
