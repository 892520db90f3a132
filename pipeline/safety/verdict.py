"""Turn detector scores and findings into one safety verdict, and apply it to the request."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from pipeline.envelope import (
    ChatRequest,
    PiiFinding,
    Safety,
    SafetyAction,
    SafetyHit,
    SafetyScan,
)
from pipeline.policy import DecisionSafety, SafetyConfig
from pipeline.safety.pii import PiiSpan, find_pii, redact

SEVERITY: dict[SafetyAction, int] = {
    "allow": 0,
    "flag": 1,
    "redact": 2,
    "route_safe": 3,
    "block": 4,
}


@dataclass(frozen=True)
class Scores:
    """What the learned detectors said about one request."""

    hits: dict[str, SafetyHit]  # per detector (jailbreak, injection, harmful): its top window
    contrastive: float | None
    contrastive_margin: float | None
    session_turns: int  # distinct suspicious turns of the session, this one included
    moderation: dict[str, float]
    moderation_thresholds: dict[str, float]
    scan: SafetyScan

    def score(self, detector: str) -> float:
        hit = self.hits.get(detector)
        return hit.score if hit else 0.0


def find_request_pii(body: ChatRequest, entities: list[str]) -> list[PiiFinding]:
    return [
        PiiFinding(entity=s.entity, message_index=i, start=s.start, end=s.end)
        for i, message in enumerate(body.messages)
        for s in find_pii(message.text(), entities)
    ]


SAFETY_MODEL = "wrp-safety"


def refusal_response(text: str) -> dict:
    """An OpenAI chat completion that refuses, as a content filter would."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": SAFETY_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "content_filter",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def verdict(
    body: ChatRequest, scores: Scores, config: SafetyConfig, models: dict[str, str]
) -> Safety:
    """The most severe action any finding calls for, with every score and reason."""
    actions: list[SafetyAction] = ["allow"]
    reasons: list[str] = []

    triggers: list[str] = []

    def act(action: SafetyAction, reason: str, trigger: str) -> None:
        actions.append(action)
        reasons.append(f"{reason} -> {action}")
        triggers.append(trigger)

    jb = config.jailbreak
    for hit in scores.hits.values():
        if hit.fired:
            act(
                getattr(config, hit.detector).action,
                f"{hit.detector} score {hit.score:.2f} >= {hit.threshold} in message "
                f"{hit.message_index} ({hit.role}), window {hit.window}",
                hit.detector,
            )
    if scores.contrastive is not None and scores.contrastive >= (scores.contrastive_margin or 0):
        act(jb.action, f"closer to attack examples by {scores.contrastive:.2f}", "jailbreak")
    if scores.session_turns >= jb.session_turns:
        act(
            jb.action,
            f"{scores.session_turns} distinct suspicious turns in this session",
            "jailbreak",
        )
    categories = sorted(
        c for c, p in scores.moderation.items() if p >= scores.moderation_thresholds[c]
    )
    for category in categories:
        act(
            config.moderation.action_for(category),
            f"moderation: {category}",
            f"moderation:{category}",
        )
    findings = find_request_pii(body, [e for e, a in config.pii.entities.items() if a != "allow"])
    for entity in sorted({f.entity for f in findings}):
        act(config.pii.entities[entity], f"PII: {entity}", f"pii:{entity}")
    action = max(actions, key=SEVERITY.__getitem__)
    redacted = action != "block" and bool(to_redact(findings, config))
    return Safety(
        action=action,
        redacted=redacted,
        jailbreak_score=round(scores.score("jailbreak"), 4),
        injection_score=round(scores.score("injection"), 4),
        harmful_score=round(scores.score("harmful"), 4),
        hits=list(scores.hits.values()),
        scan=scores.scan,
        contrastive_score=None if scores.contrastive is None else round(scores.contrastive, 4),
        session_risk=round(scores.session_turns / config.jailbreak.session_turns, 4),
        moderation={c: round(p, 4) for c, p in scores.moderation.items()},
        categories=categories,
        pii=findings,
        reasons=reasons,
        triggers=sorted(set(triggers)),
        models=models,
    )


def tighten(safety: Safety, override: DecisionSafety) -> tuple[SafetyAction, list[PiiFinding]]:
    """A decision's stricter verdict: the most severe of the verdict's action and the actions the
    decision sets for what fired (never less severe), and the PII findings it redacts."""
    actions: list[SafetyAction] = [safety.action]
    for trigger in safety.triggers:
        kind, _, name = trigger.partition(":")
        action = {
            "jailbreak": override.jailbreak_action,
            "injection": override.injection_action,
            "harmful": override.harmful_action,
            "moderation": override.moderation_action,
            "pii": override.pii.get(name),
        }.get(kind)
        if action is not None:
            actions.append(action)
    redact_entities = {e for e, a in override.pii.items() if a == "redact"}
    return (
        max(actions, key=SEVERITY.__getitem__),
        [f for f in safety.pii if f.entity in redact_entities],
    )


def to_redact(findings: list[PiiFinding], config: SafetyConfig) -> list[PiiFinding]:
    """The findings whose entity the (tenant's) policy redacts."""
    return [f for f in findings if config.pii.entities[f.entity] == "redact"]


def redact_request(body: ChatRequest, findings: list[PiiFinding]) -> ChatRequest:
    """A copy of ``body`` whose text has every finding replaced by ``<ENTITY>``.

    Offsets refer to :meth:`ChatMessage.text`: for list content, the text parts joined by
    newlines. Each part gets the pieces of the spans that fall in it (a span across two parts
    is replaced in both), so nothing found is left in place.
    """
    messages = []
    for i, message in enumerate(body.messages):
        spans = [PiiSpan(f.entity, f.start, f.end) for f in findings if f.message_index == i]
        if spans and isinstance(message.content, str):
            message = message.model_copy(update={"content": redact(message.content, spans)})
        elif spans and isinstance(message.content, list):
            parts, offset = [], 0
            for part in message.content:
                if part["type"] != "text":
                    parts.append(part)
                    continue
                text = part.get("text", "")
                local = [
                    PiiSpan(s.entity, max(s.start - offset, 0), min(s.end - offset, len(text)))
                    for s in spans
                    if s.start < offset + len(text) and s.end > offset
                ]
                parts.append({**part, "text": redact(text, local)})
                offset += len(text) + 1  # the newline text() joins parts with
            message = message.model_copy(update={"content": parts})
        messages.append(message)
    return body.model_copy(update={"messages": messages})
