"""Calling an OpenAI-compatible endpoint with a streamed chat completion.

The call streams (``stream: true`` with usage in the last chunk) so the time to first token is
measured where it happens, and reassembles the chunks into the ``chat.completion`` a non-streaming
call would have returned. Every failure raises :class:`PoolHTTPError` saying whether another
attempt may succeed: unreachable, timeout, 5xx, 429, garbage and a stream cut short are
retryable; any other 4xx is not (the same request would fail again).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx


class PoolHTTPError(Exception):
    def __init__(self, error_type: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


@dataclass(frozen=True)
class ChatReply:
    response: dict[str, Any]
    ttft_ms: float
    latency_ms: float


class _Assembler:
    """Folds ``chat.completion.chunk`` events into one ``chat.completion``."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.logprobs: list[dict[str, Any]] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> bool:
        """Fold one chunk; True when it carried generated content (for TTFT)."""
        if not self.head:
            self.head = {k: chunk.get(k) for k in ("id", "created", "model")}
        self.usage = chunk.get("usage") or self.usage
        if "kv_transfer_params" in chunk:  # disaggregated prefill: what the decode side needs
            self.head["kv_transfer_params"] = chunk["kv_transfer_params"]
        produced = False
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for key, sink in (("content", self.content), ("reasoning_content", self.reasoning)):
                if delta.get(key):
                    sink.append(delta[key])
                    produced = True
            for call in delta.get("tool_calls") or []:
                produced = True
                slot = self.tool_calls.setdefault(
                    call.get("index", 0),
                    {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
                )
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
            self.logprobs.extend((choice.get("logprobs") or {}).get("content") or [])
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        return produced

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": self.finish_reason,
        }
        if self.logprobs:
            choice["logprobs"] = {"content": self.logprobs}
        reply = {**self.head, "object": "chat.completion", "choices": [choice]}
        if self.usage is not None:
            reply["usage"] = self.usage
        return reply


def _status_error(url: str, status: int, text: str) -> PoolHTTPError:
    try:
        detail = json.loads(text).get("error", {}).get("message") or text
    except (ValueError, AttributeError):
        detail = text
    kind = (
        "pool_overloaded" if status == 429 else "pool_error" if status >= 500 else "pool_rejected"
    )
    return PoolHTTPError(
        kind, f"{url} answered {status}: {detail[:500]}", status >= 500 or status == 429
    )


async def stream_chat(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], timeout_s: float
) -> ChatReply:
    """POST ``body`` streamed to ``url``/v1/chat/completions within ``timeout_s``."""
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first: float | None = None
    assembler = _Assembler()
    done = False
    try:
        async with (
            asyncio.timeout(timeout_s),
            client.stream(
                "POST", f"{url}/v1/chat/completions", json=payload, timeout=timeout_s
            ) as reply,
        ):
            if reply.status_code >= 400:
                raise _status_error(url, reply.status_code, (await reply.aread()).decode())
            if not reply.headers.get("content-type", "").startswith("text/event-stream"):
                raise PoolHTTPError(
                    "pool_bad_response", f"{url} did not answer with an event stream", True
                )
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise PoolHTTPError(
                        "pool_bad_response", f"{url} streamed invalid JSON: {data[:200]!r}", True
                    ) from None
                if not isinstance(chunk, dict):
                    raise PoolHTTPError("pool_bad_response", f"{url} streamed {data[:200]!r}", True)
                if assembler.add(chunk) and first is None:
                    first = time.perf_counter()
    except (TimeoutError, httpx.TimeoutException):
        raise PoolHTTPError(
            "pool_timeout", f"{url} did not finish within {timeout_s:.1f}s", True
        ) from None
    except httpx.TransportError as exc:
        if assembler.head:
            raise PoolHTTPError(
                "pool_incomplete", f"{url} broke off the stream: {exc!r}", True
            ) from None
        raise PoolHTTPError("pool_unreachable", f"{url} unreachable: {exc!r}", True) from None
    if not done and assembler.finish_reason is None:
        raise PoolHTTPError("pool_incomplete", f"{url} ended the stream before finishing", True)
    ended = time.perf_counter()
    return ChatReply(
        assembler.response(), ((first or ended) - started) * 1000, (ended - started) * 1000
    )
