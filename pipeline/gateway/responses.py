"""A stateless, non-streaming subset of OpenAI's Responses API over chat completions.

``POST /v1/responses`` with ``input`` (a string, or message items whose content is a string or
``input_text``/``output_text`` parts), ``instructions``, function ``tools`` and
``max_output_tokens`` becomes a chat-completions request; the chat.completion that answers it
becomes a ``response`` object (an output message, and a ``function_call`` item per tool call).
Anything else (streaming, stored state, built-in tools, other item types) is a 400 naming the
parameter."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TEXT_PARTS = {"input_text", "output_text"}
UNSUPPORTED = ("previous_response_id", "conversation", "background", "prompt")


class ResponsesRequest(BaseModel):
    """The served part of OpenAI's ``CreateResponse`` body."""

    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool = False


class Unsupported(ValueError):
    """A parameter of the request this subset does not serve; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def chat_body(request: ResponsesRequest) -> dict[str, Any]:
    """The chat-completions body that asks what ``request`` asks."""
    if request.stream:
        raise Unsupported(
            "stream", "streaming is not served on /v1/responses: use chat completions"
        )
    extra = request.model_extra or {}
    for param in UNSUPPORTED:
        if extra.get(param) is not None:
            raise Unsupported(param, f"{param} is not served: /v1/responses here is stateless")
    messages = [{"role": "system", "content": request.instructions}] if request.instructions else []
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
    else:
        messages += [_message(item, i) for i, item in enumerate(request.input)]
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        body["tools"] = [_chat_tool(tool, i) for i, tool in enumerate(request.tools)]
    if isinstance(request.tool_choice, str):
        body["tool_choice"] = request.tool_choice
    elif isinstance(request.tool_choice, dict):
        if request.tool_choice.get("type") != "function" or not request.tool_choice.get("name"):
            raise Unsupported("tool_choice", "tool_choice: only a function by name is served")
        body["tool_choice"] = {
            "type": "function",
            "function": {"name": request.tool_choice["name"]},
        }
    text = extra.get("text")
    if isinstance(text, dict) and text.get("format") not in (None, {"type": "text"}):
        raise Unsupported("text.format", "text.format: structured output is not served here yet")
    for name, value in (
        ("max_tokens", request.max_output_tokens),
        ("temperature", request.temperature),
        ("top_p", request.top_p),
    ):
        if value is not None:
            body[name] = value
    return body


def _message(item: dict[str, Any], index: int) -> dict[str, Any]:
    if item.get("type", "message") != "message" or "role" not in item:
        raise Unsupported(f"input[{index}]", f"input item {index}: only message items are served")
    content = item.get("content")
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
                raise Unsupported(f"input[{index}].content", "only text content parts are served")
            texts.append(str(part.get("text", "")))
        content = "\n".join(texts)
    return {"role": item["role"], "content": content}


def _chat_tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    if tool.get("type") != "function" or "name" not in tool:
        raise Unsupported(f"tools[{index}]", f"tool {index}: only function tools are served")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def response_object(request: ResponsesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    """The ``response`` object for the chat.completion that answered ``request``."""
    rid = str(completion.get("id") or "").removeprefix("chatcmpl-")
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("content"):
        text = {
            "type": "output_text",
            "text": message["content"],
            "annotations": [],
            "logprobs": [],
        }
        output.append(
            {
                "id": f"msg_{rid}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [text],
            }
        )
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            {
                "id": f"fc_{call.get('id', '')}",
                "type": "function_call",
                "call_id": call.get("id", ""),
                "name": function.get("name", ""),
                "arguments": function.get("arguments", ""),
                "status": "completed",
            }
        )
    cut = choice.get("finish_reason") == "length"
    usage = completion.get("usage") or {}
    prompt, generated = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": completion.get("created") or int(time.time()),
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": request.instructions,
        "model": completion.get("model", request.model),
        "output": output,
        "parallel_tool_calls": True,
        "metadata": {},
        "tool_choice": request.tool_choice or "auto",
        "tools": request.tools or [],
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_output_tokens,
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": generated,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.get("total_tokens", prompt + generated),
        },
    }
