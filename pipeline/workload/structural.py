"""Structural signals: read from the request's shape, no model involved."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.envelope import ChatRequest
from pipeline.policy import ContextClass

#: Tokens a chat template adds around each message (role markers, separators).
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_PART_TYPES = {"image_url", "input_image", "image"}


@dataclass(frozen=True)
class StructuralSignals:
    prompt_tokens: int
    turns: int
    tools_present: bool
    images_present: bool
    context_class: str
    system_fingerprint: str | None


def context_class(tokens: int, classes: list[ContextClass]) -> str:
    """The first class whose ``max_tokens`` holds ``tokens``; the last class if none does."""
    for cls in classes:
        if tokens <= cls.max_tokens:
            return cls.name
    return classes[-1].name


def system_fingerprint(body: ChatRequest) -> str | None:
    """Short stable hash of the system prompt(s), a per-deployment identity signal."""
    system = "\n".join(m.text() for m in body.messages if m.role in ("system", "developer"))
    return hashlib.sha256(system.encode()).hexdigest()[:16] if system else None


def routing_text(body: ChatRequest) -> str:
    """The text learned signals look at: the last user message (else the last message)."""
    for message in reversed(body.messages):
        if message.role == "user" and message.text():
            return message.text()
    return body.messages[-1].text()


def extract_structural(
    body: ChatRequest, count_tokens: Callable[[str], int], classes: list[ContextClass]
) -> StructuralSignals:
    tokens = sum(count_tokens(m.text()) + MESSAGE_OVERHEAD_TOKENS for m in body.messages)
    if body.tools:
        tokens += count_tokens(json.dumps(body.tools))
    images = any(
        isinstance(m.content, list) and any(p.get("type") in IMAGE_PART_TYPES for p in m.content)
        for m in body.messages
    )
    return StructuralSignals(
        prompt_tokens=tokens,
        turns=sum(1 for m in body.messages if m.role == "user"),
        tools_present=bool(body.tools),
        images_present=images,
        context_class=context_class(tokens, classes),
        system_fingerprint=system_fingerprint(body),
    )
