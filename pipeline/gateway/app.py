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
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
from pipeline.gateway.keys import ApiKeys, key_id
from pipeline.gateway.owners import RequestOwners
from pipeline.gateway.responses import ResponsesRequest, Unsupported, chat_body, response_object
from pipeline.openai_errors import openai_error
from pipeline.policy.reload import PolicyWatcher
from pipeline.settings import Settings
from pipeline.tracing import TRACEPARENT_HEADER, tracing_for, valid_traceparent

log = logging.getLogger(__name__)

#: HTTP status for each pipeline error type (anything else: 500).
ERROR_STATUS = {
    "model_not_found": 404,
    "context_length_exceeded": 400,
    "invalid_json": 400,
    "invalid_schema": 400,
    "invalid_message": 400,
    "oversize": 413,
    "deadline_exceeded": 504,
    "pool_timeout": 504,
    "pool_unavailable": 503,
    "pool_overloaded": 503,
    "pool_unreachable": 502,
    "pool_error": 502,
    "pool_bad_response": 502,
    "pool_incomplete": 502,
    "pool_rejected": 400,
    "pool_unauthorized": 502,  # the pool refused WRP's credentials: not the client's key
    "pool_misconfigured": 500,  # a secret the pool's auth names is missing
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
}
#: OpenAI's error ``type`` for the pipeline's error types that are not request errors.
OPENAI_TYPES = {
    "rate_limit_exceeded": "requests",
    "insufficient_quota": "insufficient_quota",
}
#: The request parameter a pipeline error type is about (OpenAI's ``param``).
ERROR_PARAMS = {"model_not_found": "model", "context_length_exceeded": "messages"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text}
    for status, text in (
        (400, "malformed JSON, a schema error (the field is named) or a rejected request"),
        (401, "missing or unknown API key (checked before the body)"),
        (404, "unknown model"),
        (413, "body larger than WRP_MAX_REQUEST_BYTES"),
        (429, "a budget of the tenant, API key or session is reached (retry-after says when)"),
        (502, "the pool failed"),
        (503, "no endpoint of the pool is available"),
        (504, "no answer within the gateway's timeout"),
    )
}


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


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, counted as it streams in."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = openai_error(
            413, f"request body over {self.limit} bytes (WRP_MAX_REQUEST_BYTES)", code="too_large"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class _Unauthorized(Exception):
    pass


def unauthorized_error() -> JSONResponse:
    return openai_error(
        401,
        "Incorrect or missing API key: send `Authorization: Bearer <key>`",
        code="invalid_api_key",
    )


class ApiKeyCheck:
    """ASGI middleware: a ``/v1/`` request without a known API key gets its 401 before its body
    is read, so authentication comes before validation and the body limit, as at OpenAI."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], keys: ApiKeys, rejected: Callable[[], None]
    ) -> None:
        self.app, self.keys, self.rejected = app, keys, rejected

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            scheme, _, key = header.partition(" ")
            bearer = key.strip() if scheme.lower() == "bearer" else None
            if self.keys.tenant_for(bearer) is None:
                self.rejected()
                await unauthorized_error()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def pipeline_error(kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A pipeline error type as OpenAI's error: the type is its ``code``, its class ``type``."""
    status = ERROR_STATUS.get(kind, 500)
    default = "server_error" if status >= 500 else "invalid_request_error"
    kind_of_error = OPENAI_TYPES.get(kind, default)
    param = ERROR_PARAMS.get(kind)
    return openai_error(status, message, kind_of_error, kind, param, headers)


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """The first schema error, with the field as ``param``; malformed JSON says so plainly."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        position = next((p for p in first.get("loc", ()) if isinstance(p, int)), None)
        where = f" at character {position}" if position is not None else ""
        detail = (first.get("ctx") or {}).get("error") or first.get("msg")
        return openai_error(
            400, f"We could not parse the JSON body of your request{where}: {detail}"
        )
    field = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or None
    if first.get("type") == "missing":
        return openai_error(
            400,
            f"Missing required parameter: '{field}'.",
            param=field,
            code="missing_required_parameter",
        )
    return openai_error(400, f"{field or 'body'}: {first.get('msg')}", param=field)


def refused_parameter(body: ChatRequest) -> JSONResponse | None:
    """400 for what OpenAI requires or WRP does not serve: no ``model``, or ``n`` above 1."""
    if "model" not in body.model_fields_set:
        return openai_error(
            400,
            "Missing required parameter: 'model' (\"auto\" lets WRP choose).",
            param="model",
            code="missing_required_parameter",
        )
    n = (body.model_extra or {}).get("n")
    if n is not None and n != 1:
        return openai_error(
            400,
            f"n={n!r} is not supported: WRP returns one choice per request; send n=1 or "
            "several requests",
            param="n",
            code="unsupported_value",
        )
    return None


def completion_in_openai_shape(response: dict[str, Any]) -> dict[str, Any]:
    """``response`` with the keys OpenAI always sends (``logprobs``, ``refusal``) filled in."""
    choices = []
    for choice in response.get("choices") or []:
        message = {"content": None, "refusal": None} | (choice.get("message") or {})
        choices.append({"logprobs": None} | choice | {"message": message})
    return response | {"choices": choices}


def model_card(model_id: str, created: int, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "wrp"} | extra


def _headers(env: Envelope) -> dict[str, str]:
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


async def _forgetting(
    events: AsyncIterator[bytes], streams: StreamFollower, request_id: str
) -> AsyncIterator[bytes]:
    """``events``, then the stream's queue is dropped (also when the client goes away)."""
    try:
        async for item in events:
            yield item
    finally:
        streams.forget(request_id)


def _stream_headers(request_id: str, first: StreamChunks) -> dict[str, str]:
    return {
        "x-wrp-request-id": request_id,
        "x-wrp-decision": first.decision,
        "x-wrp-model": first.model,
        "x-wrp-pool": first.pool,
        "x-wrp-cache-hit": "false",
        "x-wrp-blocked": "false",
    }


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
                    headers=_stream_headers(rid, first),
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
        headers = _headers(answer)
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
