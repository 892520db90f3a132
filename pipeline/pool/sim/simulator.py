"""``wrp sim``: an OpenAI-compatible endpoint whose timing comes from a vLLM engine model.

Each endpoint runs one :class:`~pipeline.pool.sim.engine.Engine` (continuous batching, chunked
prefill, KV blocks, prefix cache, preemption) on a GPU profile, steps it on a clock that runs
``speed`` times faster than real time, and streams each request's tokens as the engine produces
them. ``/metrics`` uses vLLM's metric names; times in it are simulated seconds (what vLLM on that
GPU would report). Answers end where a hash of the prompt says unless ``ignore_eos`` (vLLM's
sampling parameter, used by trace replay) asks for exactly ``max_tokens``. A request with
``kv_transfer_params.do_remote_decode`` only prefills (the prefill side of a disaggregated
pool); one with ``do_remote_prefill`` skips its prefill. A request's ``sim_answer`` (a lab hook
for tests and drills) is the answer's text, one word a token, instead of the filler words.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import ValidationError

from pipeline.envelope import ChatRequest
from pipeline.openai_errors import openai_error
from pipeline.pool.blocks import block_hashes, chat_prompt, prompt_pieces
from pipeline.pool.gpu import GPUS, MODELS
from pipeline.pool.sim.engine import Engine, EngineConfig, Iteration, SimRequest

WORDS = ("the", "model", "answers", "with", "simulated", "tokens", "for", "this", "request")
MIN_OUTPUT_TOKENS, OUTPUT_TOKEN_SPREAD = 16, 176


def natural_output_tokens(prompt: str) -> int:
    """The answer length the simulator gives a prompt when max_tokens does not cut it."""
    digest = hashlib.blake2b(prompt.encode(), digest_size=4).digest()
    return MIN_OUTPUT_TOKENS + int.from_bytes(digest, "little") % OUTPUT_TOKEN_SPREAD


class SimulatedEngine:
    """An :class:`Engine` stepped on a scaled clock; hands each request its tokens as they come."""

    def __init__(self, engine: Engine, speed: float) -> None:
        self.engine = engine
        self.speed = speed
        self.streams: dict[str, asyncio.Queue[int | None]] = {}
        self._origin = time.perf_counter()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> float:
        """Simulated seconds since start."""
        return (time.perf_counter() - self._origin) * (
            self.speed if math.isfinite(self.speed) else 0
        )

    def submit(self, request: SimRequest) -> asyncio.Queue[int | None]:
        """Queue ``request``; its queue yields token counts, then None when it finished."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        stream: asyncio.Queue[int | None] = asyncio.Queue()
        self.streams[request.id] = stream
        self.engine.add(request, self.now())
        self._wake.set()
        return stream

    def _deliver(self, iteration: Iteration) -> None:
        for request_id, count in iteration.tokens:
            if stream := self.streams.get(request_id):
                stream.put_nowait(count)
        for request_id in iteration.finished:
            if stream := self.streams.pop(request_id, None):
                stream.put_nowait(None)

    async def _run(self) -> None:
        while True:
            if not self.engine.has_work:
                self._wake.clear()
                await self._wake.wait()
                continue
            iteration = self.engine.step(self.now())
            wall = iteration.duration_s / self.speed
            await asyncio.sleep(wall if math.isfinite(wall) else 0)
            self._deliver(iteration)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class EngineCollector:
    """vLLM's gauges and counters, read from the engine at scrape time."""

    def __init__(self, engine: Engine, model_name: str) -> None:
        self.engine = engine
        self.labels = {"model_name": model_name}

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        e, names = self.engine, list(self.labels)
        values = list(self.labels.values())
        for name, help_text, value in (
            ("vllm:num_requests_running", "requests in the running batch", e.num_running),
            ("vllm:num_requests_waiting", "requests waiting to be scheduled", e.num_waiting),
            ("vllm:kv_cache_usage_perc", "KV cache usage (1 = full)", e.kv_usage),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=names)
            gauge.add_metric(values, value)
            yield gauge
        for name, help_text, value in (
            (
                "vllm:prefix_cache_queries",
                "prompt tokens looked up in the prefix cache",
                e.prefix_queries,
            ),
            ("vllm:prefix_cache_hits", "prompt tokens found in the prefix cache", e.prefix_hits),
            ("vllm:num_preemptions", "preempted requests", e.num_preemptions),
            ("vllm:prompt_tokens", "prefilled prompt tokens", e.prompt_tokens),
            ("vllm:generation_tokens", "generated tokens", e.generation_tokens),
            ("vllm:request_success", "finished requests", e.finished_requests),
        ):
            counter = CounterMetricFamily(name, help_text, labels=names)
            counter.add_metric(values, value)
            yield counter


def simulator_app(
    gpu: str,
    model: str,
    served_models: list[str],
    max_model_len: int,
    speed: float = 1.0,
    config: EngineConfig | None = None,
    name: str = "sim",
    gpus: int | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """An app serving ``served_models`` with the timing of ``model`` on ``gpus`` x ``gpu``
    (tensor parallel; default: the model's usual degree). With ``api_key`` (as vLLM's
    ``--api-key``) every path but ``/health`` answers 401 in OpenAI's error shape unless called
    with ``Authorization: Bearer <api_key>``; ``/metrics`` too, as behind an authenticating
    proxy (vLLM itself leaves it open)."""
    spec = MODELS[model]
    spec = replace(spec, tp=gpus or spec.tp)
    sim = SimulatedEngine(Engine(GPUS[gpu], spec, config or EngineConfig()), speed)
    registry = CollectorRegistry()
    registry.register(EngineCollector(sim.engine, name))  # type: ignore[arg-type]
    buckets = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
    ttft = Histogram(
        "vllm:time_to_first_token_seconds",
        "TTFT",
        ["model_name"],
        buckets=buckets,
        registry=registry,
    ).labels(name)
    e2e = Histogram(
        "vllm:e2e_request_latency_seconds",
        "latency",
        ["model_name"],
        buckets=buckets,
        registry=registry,
    ).labels(name)
    app = FastAPI(title=f"wrp sim {name} ({model} on {gpu})")

    if api_key is not None:
        expected = f"Bearer {api_key}".encode()

        @app.middleware("http")
        async def require_key(request: Request, call_next: Any) -> Response:
            given = request.headers.get("authorization", "").encode()
            if request.url.path != "/health" and not hmac.compare_digest(given, expected):
                return openai_error(
                    401,
                    "Incorrect or missing API key: send Authorization: Bearer <key>",
                    code="invalid_api_key",
                )
            return await call_next(request)

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
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

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
        prompt = chat_prompt([m.text() for m in body.messages])
        pieces = prompt_pieces(prompt)
        extra_params = body.model_extra or {}
        transfer = extra_params.get("kv_transfer_params") or {}
        output_tokens = natural_output_tokens(prompt)
        scripted = extra_params.get("sim_answer")
        answer = re.findall(r"\s*\S+", scripted) if isinstance(scripted, str) else None
        if answer:
            output_tokens = len(answer)
        if body.max_tokens is not None:
            output_tokens = max(1, min(output_tokens, body.max_tokens))
            if extra_params.get("ignore_eos"):  # vLLM's benchmark switch: exactly max_tokens
                output_tokens = body.max_tokens
        if transfer.get("do_remote_decode"):
            output_tokens = 1
        if len(pieces) + output_tokens > max_model_len:
            return openai_error(
                400,
                f"This model's maximum context length is {max_model_len} tokens. However, you "
                f"requested {len(pieces) + output_tokens} tokens ({len(pieces)} in the "
                f"messages, {output_tokens} in the completion).",
            )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        arrived = sim.now()
        stream = sim.submit(
            SimRequest(
                id=completion_id,
                prompt_tokens=max(1, len(pieces)),
                output_tokens=output_tokens,
                blocks=block_hashes(pieces),
                arrival_s=arrived,
                prefilled=bool(transfer.get("do_remote_prefill")),
            )
        )
        usage = {
            "prompt_tokens": len(pieces),
            "completion_tokens": output_tokens,
            "total_tokens": len(pieces) + output_tokens,
        }
        finish = "length" if output_tokens == body.max_tokens else "stop"
        extra: dict[str, Any] = {}
        if transfer.get("do_remote_decode"):
            extra["kv_transfer_params"] = {"do_remote_prefill": True, "remote_engine": name}

        async def tokens() -> AsyncIterator[int]:
            produced = 0
            try:
                while (count := await stream.get()) is not None:
                    if produced == 0:
                        ttft.observe(sim.now() - arrived)
                    produced += count
                    yield count
            finally:
                sim.streams.pop(completion_id, None)
            e2e.observe(sim.now() - arrived)

        def words(start: int, count: int) -> str:
            if answer:
                return "".join(answer[start : start + count])
            return "".join(
                (" " if i else "") + WORDS[i % len(WORDS)] for i in range(start, start + count)
            )

        if not body.stream:
            produced = 0
            async for count in tokens():
                produced += count
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": words(0, produced)},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                    **extra,
                }
            )

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **more,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            produced = 0
            async for count in tokens():
                yield chunk({"content": words(produced, count)})
                produced += count
            yield chunk({}, finish, usage=usage, **extra)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
