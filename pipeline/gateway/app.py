"""``wrp gateway``: OpenAI's chat-completions API in front of the pipeline.

A request is published to ``wrp.requests`` (tenant from the API key, ``reply_to`` the responses
topic, ``deadline`` the gateway's timeout) and answered from ``wrp.responses`` by request id.
``/healthz`` says the gateway process is alive; ``/readyz`` says whether the pipeline behind it
is: every stage of the request path has a live process (``wrp.stage-health``). While it is not,
chat requests get a 503 at once instead of waiting for their timeout.
``stream: true`` is served as server-sent events with the tokens as the pool generates them
(dispatch relays them on ``wrp.stream``); an answer that comes whole (a cached answer, a refusal)
is sent as the chunks a streaming server would have sent. Headers
``x-wrp-request-id``, ``x-wrp-decision``, ``x-wrp-model``, ``x-wrp-pool``, ``x-wrp-cache-hit``,
``x-wrp-blocked`` and (when a budget acted) ``x-wrp-budget`` say what happened.
The API key is checked before the body is read; errors are OpenAI's error object (a string
``code`` or null); ``POST /v1/responses`` serves a stateless subset of the Responses API.
This module is the app and its routes; the key check and body limit are in
:mod:`pipeline.gateway.middleware`, the error responses in :mod:`pipeline.gateway.errors`, the
answers' shape and ``x-wrp-*`` headers in :mod:`pipeline.gateway.shaping`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.analytics.access import AnalyticsUnavailable
from pipeline.api_keys import ApiKeys, key_id
from pipeline.bus.catalog import FEEDBACK, REQUESTS, RESPONSES, STAGE_HEALTH
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import encode
from pipeline.bus.liveness import missing_stages
from pipeline.bus.table import CompactedTable
from pipeline.client import ResponseCollector, StreamFollower, first_of
from pipeline.envelope import (
    IDENTIFIER,
    ChatRequest,
    Envelope,
    Feedback,
    RequestSection,
    StageHealth,
    StreamChunks,
    Verdict,
    now,
)
from pipeline.gateway import sse
from pipeline.gateway.errors import (
    ERROR_RESPONSES,
    pipeline_error,
    refused_parameter,
    unauthorized_error,
    validation_error,
)
from pipeline.gateway.middleware import ApiKeyCheck, BodyLimit
from pipeline.gateway.owners import RequestOwners
from pipeline.gateway.responses import ResponsesRequest, Unsupported, chat_body, response_object
from pipeline.gateway.shaping import (
    answer_headers,
    completion_in_openai_shape,
    model_card,
    stream_headers,
)
from pipeline.openai_errors import openai_error
from pipeline.policy.reload import PolicyWatcher
from pipeline.settings import Settings
from pipeline.tracing import TRACEPARENT_HEADER, tracing_for, valid_traceparent

log = logging.getLogger(__name__)

CHAT_RESPONSE: dict[str, Any] = {
    "description": "a chat.completion, or chat.completion.chunk events when `stream` is true",
    "content": {"application/json": {}, "text/event-stream": {}},
}


class FeedbackRequest(BaseModel):
    """Exactly one of ``score`` (0-1), ``thumbs``, ``rating`` (1-5) or ``verdict``."""

    request_id: str = Field(pattern=IDENTIFIER)
    score: float | None = Field(None, ge=0, le=1)
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(None, ge=1, le=5)
    verdict: Verdict | None = None
    comment: str | None = Field(None, max_length=4000)


class _Unauthorized(Exception):
    pass


async def _forgetting(
    events: AsyncIterator[bytes], streams: StreamFollower, request_id: str
) -> AsyncIterator[bytes]:
    """``events``, then the stream's queue is dropped (also when the client goes away)."""
    try:
        async for item in events:
            yield item
    finally:
        streams.forget(request_id)


def gateway_app(settings: Settings, keys: ApiKeys) -> FastAPI:
    """The gateway; Kafka clients open and close with the app's lifespan."""
    registry = CollectorRegistry()
    served = Counter("wrp_gateway_requests", "requests by outcome", ["status"], registry=registry)
    seconds = Histogram(
        "wrp_gateway_seconds",
        "request round trip",
        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        registry=registry,
    )
    clients: dict[str, Any] = {}
    owners = RequestOwners(settings)
    tracing = tracing_for(settings, "gateway")
    started_at = int(time.time())  # the models' ``created``: when this gateway began serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = new_producer(settings.broker, linger_ms=1)
        collector = ResponseCollector(settings.broker, RESPONSES, retain=False)
        streams = StreamFollower(settings.broker)
        collector.carry(streams)  # one consumer, one fetch, for replies and streams
        watcher = PolicyWatcher(settings.policy)
        # heartbeats matter by the second: a long fetch wait keeps the tail cheap
        health = CompactedTable(settings.broker, STAGE_HEALTH, StageHealth, wait_ms=1000)
        await producer.start()
        await collector.start()
        await health.start()
        watcher.start()
        clients.update(
            producer=producer, collector=collector, streams=streams, watcher=watcher, health=health
        )
        if keys.open:
            log.warning(
                "gateway: OPEN (WRP_GATEWAY_OPEN=true and no API keys): every caller is tenant "
                "'default'"
            )
        elif settings.gateway_open:
            log.warning("gateway: WRP_GATEWAY_OPEN is ignored: API keys are configured")
        try:
            yield
        finally:
            await watcher.stop()
            await health.stop()
            await collector.stop()
            await producer.stop()
            tracing.shutdown()

    app = FastAPI(title="WRP gateway", version="1", lifespan=lifespan)
    bearer = HTTPBearer(auto_error=False)

    def tenant_of(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> str:
        tenant = keys.tenant_for(credentials.credentials if credentials else None)
        if tenant is None:
            raise _Unauthorized
        return tenant

    def api_key_of(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> str | None:
        return key_id(credentials.credentials) if credentials else None

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        served.labels("unauthorized").inc()
        return unauthorized_error()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        served.labels("invalid").inc()
        return validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown paths and methods answer OpenAI's error object, not FastAPI's ``detail``."""
        if exc.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        else:
            message = f"{exc.detail} ({request.method} {request.url.path})"
        return openai_error(exc.status_code, message, headers=exc.headers)

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        responses={**ERROR_RESPONSES, 200: CHAT_RESPONSE},
    )
    async def chat_completions(
        body: ChatRequest,
        tenant: str = Depends(tenant_of),
        api_key: str | None = Depends(api_key_of),
        x_wrp_session_id: str | None = Header(None, pattern=IDENTIFIER),
        traceparent: str | None = Header(None, description="W3C trace context to continue"),
    ) -> Response:
        """`model: "auto"` routes; a model name pins it (signals and safety still run)."""
        refused = refused_parameter(body)
        if refused is not None:
            served.labels("invalid").inc()
            return refused
        missing = missing_stages(clients["health"].values, now())
        if missing:
            served.labels("not_ready").inc()
            return openai_error(
                503,
                f"the pipeline is not ready: no live {', '.join(missing)} stage; retry shortly",
                "server_error",
                "service_unavailable",
                headers={"retry-after": "2"},
            )
        started = time.perf_counter()
        section = RequestSection(
            tenant=tenant,
            session_id=x_wrp_session_id,
            api_key=api_key,
            body=body,
            deadline=now() + settings.gateway_timeout_s,
        )
        envelope = Envelope(request=section)
        rid = section.request_id
        collector: ResponseCollector = clients["collector"]
        streams: StreamFollower = clients["streams"]
        future = collector.expect(rid)
        stream = streams.expect(rid) if body.stream else None
        owners.remember(rid, tenant)
        span = tracing.start("gateway", valid_traceparent(traceparent), envelope)
        try:
            await clients["producer"].send_and_wait(
                REQUESTS,
                encode(envelope),
                key=envelope.key.encode(),
                headers=[(TRACEPARENT_HEADER, span.traceparent.encode())],
            )
            span.end()
        except BaseException:
            collector.forget(rid)
            streams.forget(rid)
            raise
        if stream is None:
            answer = await collector.response(future, rid, settings.gateway_timeout_s)
        else:
            first = await first_of(future, stream, settings.gateway_timeout_s)
            collector.forget(rid)
            if isinstance(first, StreamChunks):
                owners.answered(rid, "ok")  # a model is answering it
                seconds.observe(time.perf_counter() - started)  # to the first tokens
                served.labels("streamed").inc()
                options = (body.model_extra or {}).get("stream_options") or {}
                until = time.monotonic() + settings.gateway_timeout_s
                events = sse.relayed(first, stream, until, bool(options.get("include_usage")))
                return StreamingResponse(
                    _forgetting(events, streams, rid),
                    media_type="text/event-stream",
                    headers=stream_headers(rid, first),
                )
            streams.forget(rid)
            answer = first
        seconds.observe(time.perf_counter() - started)
        if answer is None or answer.result is None:
            served.labels("timeout").inc()
            return openai_error(
                504,
                f"no answer within {settings.gateway_timeout_s:g}s (WRP_GATEWAY_TIMEOUT_S)",
                "server_error",
                "timeout",
                headers={"x-wrp-request-id": section.request_id},
            )
        headers = answer_headers(answer)
        result = answer.result
        owners.answered(rid, result.status)
        served.labels(result.status).inc()
        if result.error is not None or result.response is None:
            kind = result.error.type if result.error else "internal_error"
            message = result.error.message if result.error else "the pipeline gave no answer"
            retry_after = result.error.retry_after_s if result.error else None
            if retry_after is not None:
                headers["retry-after"] = str(max(1, math.ceil(retry_after)))
            return pipeline_error(kind, message, headers)
        if body.stream:
            return StreamingResponse(
                sse.whole(result.response), media_type="text/event-stream", headers=headers
            )
        return JSONResponse(completion_in_openai_shape(result.response), headers=headers)

    @app.post(
        "/v1/responses",
        response_model=None,
        responses={**ERROR_RESPONSES, 200: {"description": "a response object"}},
    )
    async def create_response(
        body: ResponsesRequest,
        tenant: str = Depends(tenant_of),
        api_key: str | None = Depends(api_key_of),
        x_wrp_session_id: str | None = Header(None, pattern=IDENTIFIER),
        traceparent: str | None = Header(None, description="W3C trace context to continue"),
    ) -> Response:
        """Responses API, stateless and not streaming: asked and answered as a chat completion."""
        try:
            chat = ChatRequest.model_validate(chat_body(body))
        except Unsupported as exc:
            served.labels("invalid").inc()
            return openai_error(400, str(exc), param=exc.param, code="unsupported_parameter")
        except ValidationError as exc:
            served.labels("invalid").inc()
            return openai_error(400, f"input: {exc.errors()[0]['msg']}", param="input")
        answer = await chat_completions(chat, tenant, api_key, x_wrp_session_id, traceparent)
        if answer.status_code != 200:
            return answer
        headers = {k: v for k, v in answer.headers.items() if k.startswith("x-wrp-")}
        return JSONResponse(response_object(body, json.loads(answer.body)), headers=headers)

    def models() -> list[dict[str, Any]]:
        policy = clients["watcher"].policy
        return [model_card("auto", started_at)] + [
            model_card(m.name, started_at, context_length=m.context_length) for m in policy.models
        ]

    @app.get("/v1/models")
    async def list_models(tenant: str = Depends(tenant_of)) -> dict[str, Any]:
        return {"object": "list", "data": models()}

    @app.get(
        "/v1/models/{model:path}",  # ids such as meta-llama/Llama-3.1-8B-Instruct
        response_model=None,
        responses={404: {"description": "no such model"}, 401: ERROR_RESPONSES[401]},
    )
    async def retrieve_model(
        model: str, tenant: str = Depends(tenant_of)
    ) -> dict[str, Any] | JSONResponse:
        """One model: ``auto`` or a model of the policy."""
        for card in models():
            if card["id"] == model:
                return card
        return openai_error(
            404, f"The model `{model}` does not exist.", param="model", code="model_not_found"
        )

    @app.post(
        "/v1/feedback",
        status_code=202,
        response_model=None,
        responses={
            400: {"description": "a schema error, or the request was not answered by a model"},
            404: {"description": "no such request for this API key"},
            503: {"description": "the request's owner cannot be checked now"},
        },
    )
    async def feedback(
        body: FeedbackRequest,
        tenant: str = Depends(tenant_of),
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> dict[str, str] | JSONResponse:
        """Judge a request of your own tenant; it reaches the learner through ``wrp.feedback``.
        One judgement per request counts; a later one replaces it in the analytics."""
        try:
            judged = Feedback(**body.model_dump(), source=f"tenant:{tenant}", tenant=tenant)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        key = None if keys.open or credentials is None else credentials.credentials
        try:
            status = await owners.status(judged.request_id, tenant, key)
        except AnalyticsUnavailable as exc:
            log.warning("gateway: feedback for %s not checked: %s", judged.request_id, exc)
            served.labels("feedback_unchecked").inc()
            return openai_error(
                503,
                "the request's owner cannot be checked right now (analytics unavailable); retry",
                "server_error",
                "service_unavailable",
            )
        if status is None:
            served.labels("feedback_not_found").inc()
            return openai_error(
                404,
                f"No request {judged.request_id!r} for this API key",
                code="not_found",
                param="request_id",
            )
        if status not in ("ok", "pending"):
            served.labels("feedback_refused").inc()
            return openai_error(
                400,
                f"request {judged.request_id!r} ended {status}: no model answered it, so there "
                "is no answer to judge",
                param="request_id",
            )
        await clients["producer"].send_and_wait(
            FEEDBACK, encode(judged), key=judged.request_id.encode()
        )
        served.labels("feedback").inc()
        return {"status": "accepted", "request_id": judged.request_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness of the gateway process itself."""
        return {"status": "ok" if clients else "starting"}

    @app.get("/readyz", responses={503: {"description": "a stage of the request path is down"}})
    async def readyz() -> JSONResponse:
        """Readiness: every stage of the request path has a live process."""
        if not clients:
            return JSONResponse({"ready": False, "missing": ["gateway"]}, status_code=503)
        records = clients["health"].values
        missing = missing_stages(records, now())
        processes = {
            key: {"state": h.state, "seconds_ago": round(now() - h.at, 1)}
            for key, h in sorted(records.items())
        }
        body = {"ready": not missing, "missing": missing, "processes": processes}
        return JSONResponse(body, status_code=503 if missing else 200)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    rejected = served.labels("unauthorized").inc
    app.add_middleware(
        ApiKeyCheck, keys=keys, rejected=rejected
    )  # outermost: the key before the body
    return app


async def serve_gateway(settings: Settings, keys: ApiKeys, host: str = "127.0.0.1") -> None:
    """Run the gateway on ``settings.gateway_port`` until SIGTERM/SIGINT."""
    app = gateway_app(settings, keys)
    config = uvicorn.Config(app, host=host, port=settings.gateway_port, log_level="warning")
    await uvicorn.Server(config).serve()
