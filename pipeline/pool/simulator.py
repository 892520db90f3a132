"""``wrp sim``: an OpenAI-compatible endpoint whose latency follows :mod:`pipeline.pool.sim_model`.

Serves ``/v1/chat/completions`` (streaming and not), ``/v1/models`` and ``/metrics`` with vLLM's
metric names, so dispatch and dashboards treat it like a vLLM server.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError

from pipeline.envelope import ChatRequest
from pipeline.policy import SimulatorProfile
from pipeline.pool.sim_model import EngineModel, estimate_tokens, natural_output_tokens

WORDS = ("the", "model", "answers", "with", "simulated", "tokens", "for", "this", "request")


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
    )


class SimMetrics:
    def __init__(self, engine: EngineModel, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        running = Gauge("vllm:num_requests_running", "running", labels, registry=self.registry)
        waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=self.registry)
        running.labels(model_name).set_function(lambda: engine.running)
        waiting.labels(model_name).set_function(lambda: engine.waiting)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "prompt tokens", labels, registry=self.registry
        ).labels(model_name)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "generated tokens", labels, registry=self.registry
        ).labels(model_name)
        self.success = Counter(
            "vllm:request_success", "finished requests", labels, registry=self.registry
        ).labels(model_name)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "TTFT", labels, registry=self.registry
        ).labels(model_name)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "end-to-end latency",
            labels,
            registry=self.registry,
        ).labels(model_name)


def simulator_app(
    profile: SimulatorProfile, served_models: list[str], max_model_len: int, name: str = "sim"
) -> FastAPI:
    """An app serving ``served_models`` with the timing of ``profile``."""
    engine = EngineModel(profile)
    metrics = SimMetrics(engine, name)
    app = FastAPI(title=f"wrp sim {name}")

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "owned_by": "wrp-sim", "max_model_len": max_model_len}
                for m in served_models
            ],
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        try:
            body = ChatRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return openai_error(400, f"invalid request: {exc.errors()[0]['msg']}")
        if body.model not in served_models:
            return openai_error(404, f"The model `{body.model}` does not exist.", "NotFoundError")
        prompt = "\n".join(m.text() for m in body.messages)
        prompt_tokens = estimate_tokens(prompt)
        output_tokens = natural_output_tokens(prompt)
        if body.max_tokens is not None:
            output_tokens = min(output_tokens, body.max_tokens)
        if prompt_tokens + output_tokens > max_model_len:
            return openai_error(
                400,
                f"This model's maximum context length is {max_model_len} tokens. However, you "
                f"requested {prompt_tokens + output_tokens} tokens ({prompt_tokens} in the "
                f"messages, {output_tokens} in the completion).",
            )
        started = time.perf_counter()
        await engine.admit()
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        words = [WORDS[i % len(WORDS)] for i in range(output_tokens)]

        def usage() -> dict[str, int]:
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            }

        def account() -> None:
            metrics.prompt_tokens.inc(prompt_tokens)
            metrics.generation_tokens.inc(output_tokens)
            metrics.success.inc()
            metrics.e2e.observe(time.perf_counter() - started)

        if not body.stream:
            try:
                await asyncio.sleep(engine.prefill_s(prompt_tokens))
                metrics.ttft.observe(time.perf_counter() - started)
                await asyncio.sleep(engine.decode_s(output_tokens))
            finally:
                engine.finish()
            account()
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "finish_reason": "length"
                            if output_tokens == body.max_tokens
                            else "stop",
                        }
                    ],
                    "usage": usage(),
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
                payload = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **extra,
                }
                return f"data: {json.dumps(payload)}\n\n".encode()

            try:
                await asyncio.sleep(engine.prefill_s(prompt_tokens))
                metrics.ttft.observe(time.perf_counter() - started)
                yield chunk({"role": "assistant", "content": ""})
                per_token = engine.decode_s(1)
                for i, word in enumerate(words):
                    await asyncio.sleep(per_token)
                    yield chunk({"content": word if i == 0 else f" {word}"})
                yield chunk({}, "stop", usage=usage())
                yield b"data: [DONE]\n\n"
            finally:
                engine.finish()
            account()

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
