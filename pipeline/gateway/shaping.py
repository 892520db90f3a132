"""What the gateway sends back besides errors: completions with the keys OpenAI always sends,
model cards, and the ``x-wrp-*`` headers that say what the pipeline did with a request."""

from __future__ import annotations

from typing import Any

from pipeline.envelope import Envelope, StreamChunks


def completion_in_openai_shape(response: dict[str, Any]) -> dict[str, Any]:
    """``response`` with the keys OpenAI always sends (``logprobs``, ``refusal``) filled in."""
    choices = []
    for choice in response.get("choices") or []:
        message = {"content": None, "refusal": None} | (choice.get("message") or {})
        choices.append({"logprobs": None} | choice | {"message": message})
    return response | {"choices": choices}


def model_card(model_id: str, created: int, **extra: Any) -> dict[str, Any]:
    """One entry of ``/v1/models``."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "wrp"} | extra


def answer_headers(env: Envelope) -> dict[str, str]:
    """The ``x-wrp-*`` headers of an answered request: its decision, budget and block."""
    decision = env.decision
    headers = {"x-wrp-request-id": env.request.request_id}
    if decision is not None:
        headers |= {
            "x-wrp-decision": decision.decision,
            "x-wrp-model": decision.model,
            "x-wrp-pool": decision.pool,
            "x-wrp-cache-hit": str(decision.cache_hit).lower(),
        }
        if decision.budget is not None:
            headers["x-wrp-budget"] = f"{decision.budget}:{decision.budget_action}"
    blocked = env.result is not None and env.result.status == "blocked"
    if blocked:
        headers.setdefault("x-wrp-decision", "blocked")
    headers["x-wrp-blocked"] = str(blocked).lower()
    return headers


def stream_headers(request_id: str, first: StreamChunks) -> dict[str, str]:
    """The ``x-wrp-*`` headers of a streamed answer, from its first chunks."""
    return {
        "x-wrp-request-id": request_id,
        "x-wrp-decision": first.decision,
        "x-wrp-model": first.model,
        "x-wrp-pool": first.pool,
        "x-wrp-cache-hit": "false",
        "x-wrp-blocked": "false",
    }
