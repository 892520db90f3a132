"""Server-sent events for a streamed chat completion, as OpenAI sends them: one
``data: {chat.completion.chunk}`` event per chunk, then ``data: [DONE]``.

Tokens come from ``wrp.stream`` as the pool generates them (:func:`relayed`); an answer that
arrives whole instead (a cached answer, a refusal) is cut into the chunks a streaming server
would have sent (:func:`whole`). An error after the stream began is one ``data: {"error": ...}``
event before ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pipeline.envelope import StreamChunks
from pipeline.openai_errors import error_body

DONE = b"data: [DONE]\n\n"


def event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def _error(kind: str, message: str) -> bytes:
    """An error after the stream began: the server's (``server_error``), its kind the code."""
    return event(error_body(message, "server_error", code=kind))


async def relayed(
    first: StreamChunks,
    rest: asyncio.Queue[StreamChunks],
    until: float,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """The stream's chunks as they arrive, until its last record or ``until`` (monotonic)."""
    part = first
    while True:
        for chunk in part.chunks:
            if include_usage or chunk.get("choices") or not chunk.get("usage"):
                yield event(chunk)
        if part.done:
            if part.error is not None:
                yield _error(part.error.type, part.error.message)
            break
        try:
            part = await asyncio.wait_for(rest.get(), max(0.0, until - time.monotonic()))
        except TimeoutError:
            yield _error("timeout", "the answer stopped arriving (WRP_GATEWAY_TIMEOUT_S)")
            break
    yield DONE


async def whole(response: dict[str, Any]) -> AsyncIterator[bytes]:
    """A whole chat.completion as the chunks a streaming server would have sent."""
    head = {
        "id": response.get("id", ""),
        "object": "chat.completion.chunk",
        "created": response.get("created", int(time.time())),
        "model": response.get("model", ""),
    }
    choice = (response.get("choices") or [{}])[0]
    message = choice.get("message") or {}

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        body = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return event(body | extra)

    yield chunk({k: v for k, v in message.items() if v is not None}, None)
    yield chunk({}, choice.get("finish_reason") or "stop", usage=response.get("usage"))
    yield DONE
