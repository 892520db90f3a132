"""Calling an OpenAI-compatible endpoint's chat completions, on one aiohttp session.

A request that does not stream is one plain POST and one JSON answer: the cheapest call there is
(it has no time to first token). One that streams (``relay`` given) asks for
``stream: true`` with usage in the last chunk, hands each batch of ``chat.completion.chunk``
events to ``relay`` as it arrives, measures the time to first token where it happens, and also
reassembles the chunks into the ``chat.completion`` a plain call would have returned. Every failure
raises :class:`PoolHTTPError` saying whether another attempt may succeed: unreachable, timeout,
5xx, 429, garbage and a stream cut short are retryable; any other 4xx is not (the same request
would fail again), and 401/403 are ``pool_unauthorized`` (the pool refused WRP's credentials).
``headers`` (an endpoint's credentials) go on every request and never into an error message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

#: What a streamed call hands on as chunks arrive: the chunk events read since the last call.
Relay = Callable[[list[dict[str, Any]]], Awaitable[None]]


class PoolHTTPError(Exception):
    def __init__(self, error_type: str, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable


@dataclass(frozen=True)
class ChatReply:
    response: dict[str, Any]
    ttft_ms: float | None  # only a streamed call sees its first token
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
    if not isinstance(detail, str):
        detail = text
    kind = (
        "pool_overloaded"
        if status == 429
        else "pool_error"
        if status >= 500
        else "pool_unauthorized"
        if status in (401, 403)
        else "pool_rejected"
    )
    if kind == "pool_unauthorized":  # its message may quote the key it was given
        detail = "the pool refused the credentials it was called with (see the pool's auth)"
    return PoolHTTPError(
        kind, f"{url} answered {status}: {detail[:500]}", status >= 500 or status == 429
    )


def _failure(url: str, exc: BaseException, timeout_s: float, relayed: bool) -> PoolHTTPError:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return PoolHTTPError("pool_timeout", f"{url} did not finish within {timeout_s:.1f}s", True)
    if relayed or isinstance(exc, aiohttp.ClientPayloadError):
        return PoolHTTPError("pool_incomplete", f"{url} broke off the answer: {exc!r}", True)
    return PoolHTTPError("pool_unreachable", f"{url} unreachable: {exc!r}", True)


async def chat(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    timeout_s: float,
    relay: Relay | None = None,
    headers: dict[str, str] | None = None,
) -> ChatReply:
    """POST ``body`` to ``url``/v1/chat/completions with ``headers`` within ``timeout_s``;
    streamed when ``relay`` is given."""
    started = time.perf_counter()
    state: dict[str, Any] = {"relayed": False}
    try:
        async with asyncio.timeout(timeout_s):
            if relay is None:
                return await _plain(session, url, body, started, headers)
            return await _streamed(session, url, body, started, relay, state, headers)
    except PoolHTTPError:
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _failure(url, exc, timeout_s, state["relayed"]) from None
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # an answer of odd shape
        raise PoolHTTPError("pool_bad_response", f"{url} answered {exc!r}", True) from None


async def _plain(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    started: float,
    headers: dict[str, str] | None,
) -> ChatReply:
    payload = {**body, "stream": False}
    async with session.post(f"{url}/v1/chat/completions", json=payload, headers=headers) as reply:
        text = (await reply.read()).decode("utf-8", "replace")
        if reply.status >= 400:
            raise _status_error(url, reply.status, text)
    try:
        response = json.loads(text)
    except ValueError:
        raise PoolHTTPError(
            "pool_bad_response", f"{url} answered invalid JSON: {text[:200]!r}", True
        ) from None
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or not all(
        isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices
    ):
        raise PoolHTTPError("pool_bad_response", f"{url} answered {text[:200]!r}", True)
    return ChatReply(response, None, (time.perf_counter() - started) * 1000)


async def _streamed(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    started: float,
    relay: Relay,
    state: dict[str, Any],
    headers: dict[str, str] | None,
) -> ChatReply:
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    first: float | None = None
    assembler = _Assembler()
    done = False
    async with session.post(f"{url}/v1/chat/completions", json=payload, headers=headers) as reply:
        if reply.status >= 400:
            text = (await reply.read()).decode("utf-8", "replace")
            raise _status_error(url, reply.status, text)
        if not reply.headers.get("content-type", "").startswith("text/event-stream"):
            raise PoolHTTPError(
                "pool_bad_response", f"{url} did not answer with an event stream", True
            )
        pending = b""
        while not done:
            data = await reply.content.readany()  # what has arrived: one relay per read
            if not data:
                break
            *lines, pending = (pending + data).split(b"\n")
            chunks, done = _chunks(url, lines)
            for chunk in chunks:
                if assembler.add(chunk) and first is None:
                    first = time.perf_counter()
            if chunks:
                await relay(chunks)
                state["relayed"] = True
    if not done and assembler.finish_reason is None:
        raise PoolHTTPError("pool_incomplete", f"{url} ended the stream before finishing", True)
    ended = time.perf_counter()
    return ChatReply(
        assembler.response(), ((first or ended) - started) * 1000, (ended - started) * 1000
    )


def _chunks(url: str, lines: list[bytes]) -> tuple[list[dict[str, Any]], bool]:
    """The chunk events among server-sent ``lines``, and whether ``[DONE]`` came."""
    chunks = []
    for line in lines:
        if not line.startswith(b"data:"):
            continue
        event = line[5:].strip()
        if event == b"[DONE]":
            return chunks, True
        try:
            chunk = json.loads(event)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise PoolHTTPError("pool_bad_response", f"{url} streamed {event[:200]!r}", True)
        chunks.append(chunk)
    return chunks, False
