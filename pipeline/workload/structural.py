"""Structural signals: read from the request's shape, no model involved."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from pipeline.envelope import ChatMessage, ChatRequest, StructuralSignals
from pipeline.policy import ContextClass

#: Tokens a chat template adds around each message (role markers, separators).
MESSAGE_OVERHEAD_TOKENS = 4
#: Tokens an image part costs a typical vision model (one 512x512 tile).
IMAGE_PART_TOKENS = 85
IMAGE_PART_TYPES = {"image_url", "input_image", "image"}
AUDIO_PART_TYPES = {"input_audio", "audio", "audio_url"}


def context_class(tokens: int, classes: list[ContextClass]) -> str:
    """The first class whose ``max_tokens`` holds ``tokens``; the last class if none does."""
    for cls in classes:
        if tokens <= cls.max_tokens:
            return cls.name
    return classes[-1].name


def system_fingerprint(body: ChatRequest) -> str | None:
    """Short stable hash of the system prompt(s), a per-deployment identity signal."""
    system = "\n".join(m.text() for m in body.messages if m.role in ("system", "developer"))
    return hashlib.sha256(system.encode("utf-8", "replace")).hexdigest()[:16] if system else None


def routing_text(body: ChatRequest) -> str:
    """The text learned signals look at: the last user message (else the last message)."""
    for message in reversed(body.messages):
        if message.role == "user" and message.text():
            return message.text()
    return body.messages[-1].text()


def _has_part(message: ChatMessage, types: set[str]) -> bool:
    return isinstance(message.content, list) and any(p["type"] in types for p in message.content)


def in_tool_loop(body: ChatRequest) -> bool:
    """An agent loop is running: the newest turn answers a tool call instead of a person."""
    last = body.messages[-1]
    return last.role == "tool" or (last.role == "assistant" and bool(last.tool_calls))


def extract_structural(
    body: ChatRequest, count_tokens: Callable[[str], int], classes: list[ContextClass]
) -> StructuralSignals:
    tokens = 0
    for m in body.messages:
        tokens += count_tokens(m.text()) + MESSAGE_OVERHEAD_TOKENS
        if _has_part(m, IMAGE_PART_TYPES):
            parts = m.content if isinstance(m.content, list) else []
            tokens += IMAGE_PART_TOKENS * sum(p["type"] in IMAGE_PART_TYPES for p in parts)
        if m.tool_calls:
            tokens += count_tokens(json.dumps(m.tool_calls))
    if body.tools:
        tokens += count_tokens(json.dumps(body.tools))
    return StructuralSignals(
        prompt_tokens=tokens,
        context_class=context_class(tokens, classes),
        messages=len(body.messages),
        turns=sum(1 for m in body.messages if m.role == "user"),
        tools_present=bool(body.tools),
        tool_loop=in_tool_loop(body),
        images_present=any(_has_part(m, IMAGE_PART_TYPES) for m in body.messages),
        audio_present=any(_has_part(m, AUDIO_PART_TYPES) for m in body.messages),
        system_fingerprint=system_fingerprint(body),
    )
