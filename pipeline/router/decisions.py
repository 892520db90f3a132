"""Decision engine: rules over signals, in priority order, with a default."""

from __future__ import annotations

from typing import Any

from pipeline.envelope import Envelope
from pipeline.policy import DecisionSpec, ModelCard, Policy


def rule_values(envelope: Envelope) -> dict[str, Any]:
    """The values decision rules can test (see ``pipeline.policy.rules.RULE_SIGNALS``)."""
    signals, safety = envelope.signals, envelope.safety
    assert signals is not None and safety is not None
    values: dict[str, Any] = signals.model_dump(
        exclude={"embedding", "encoder", "heads", "keywords", "embedding_rules"}
    )
    values.update(
        jailbreak_score=safety.jailbreak_score,
        injection_score=safety.injection_score,
        harmful_score=safety.harmful_score,
        session_risk=safety.session_risk,
        pii_found=bool(safety.pii),
        moderation_flagged=bool(safety.categories),
        safety_action=safety.action,
        tenant=envelope.request.tenant,
    )
    values.update({f"keyword.{name}": True for name in signals.keywords})
    values.update({f"embedding.{name}": True for name in signals.embedding_rules})
    return values


def match_decision(policy: Policy, values: dict[str, Any]) -> DecisionSpec:
    """The highest-priority decision whose rule holds; the default when none does."""
    for spec in policy.router.ordered():
        if spec.when.holds(values):
            return spec
    return policy.router.default


def fitting_models(policy: Policy, names: list[str], needed_tokens: int) -> list[ModelCard]:
    """Candidates, in order, whose context window holds the prompt plus the answer budget."""
    cards = [policy.model(name) for name in names]
    return [card for card in cards if card.context_length >= needed_tokens]
