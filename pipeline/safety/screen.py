"""Turn detector findings into one safety verdict and apply it to the request."""

from __future__ import annotations

from pipeline.envelope import ChatRequest, PiiFinding, Safety, SafetyAction
from pipeline.policy import SafetyConfig
from pipeline.safety.pii import PiiSpan, find_pii, redact

SEVERITY: dict[SafetyAction, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


def find_request_pii(body: ChatRequest, entities: list[str]) -> list[PiiFinding]:
    return [
        PiiFinding(entity=s.entity, message_index=i, start=s.start, end=s.end)
        for i, message in enumerate(body.messages)
        for s in find_pii(message.text(), entities)
    ]


def screen(body: ChatRequest, jailbreak_score: float, config: SafetyConfig) -> Safety:
    """The verdict: the most severe action any finding calls for."""
    findings = find_request_pii(body, config.pii.entities)
    actions: list[SafetyAction] = ["allow"]
    reasons: list[str] = []
    if jailbreak_score >= config.jailbreak.threshold:
        actions.append(config.jailbreak.action)
        reasons.append(f"jailbreak score {jailbreak_score:.2f} >= {config.jailbreak.threshold}")
    if findings:
        actions.append(config.pii.action)
        kinds = sorted({f.entity for f in findings})
        reasons.append(f"PII found: {', '.join(kinds)}")
    action = max(actions, key=SEVERITY.__getitem__)
    return Safety(
        action=action, jailbreak_score=round(jailbreak_score, 4), pii=findings, reasons=reasons
    )


def redact_request(body: ChatRequest, findings: list[PiiFinding]) -> ChatRequest:
    """A copy of ``body`` whose text content has every finding replaced by ``<ENTITY>``."""
    messages = []
    for i, message in enumerate(body.messages):
        spans = [PiiSpan(f.entity, f.start, f.end) for f in findings if f.message_index == i]
        if spans and isinstance(message.content, str):
            message = message.model_copy(update={"content": redact(message.content, spans)})
        elif spans and isinstance(message.content, list):
            # offsets refer to the joined text parts: redact each part on its own instead
            parts = [
                {**p, "text": redact(p["text"], find_pii(p["text"], [s.entity for s in spans]))}
                if p.get("type") == "text"
                else p
                for p in message.content
            ]
            message = message.model_copy(update={"content": parts})
        messages.append(message)
    return body.model_copy(update={"messages": messages})
