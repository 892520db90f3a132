"""The gateway's HTTP pieces without a broker: the middleware, the error responses in OpenAI's
shape and the answers' shape and headers."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from pipeline.api_keys import ApiKeys, digest
from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.gateway.errors import pipeline_error, refused_parameter, validation_error
from pipeline.gateway.middleware import ApiKeyCheck, BodyLimit
from pipeline.gateway.shaping import answer_headers, completion_in_openai_shape, model_card

KEY = "sk-test-key"


class Body(BaseModel):
    model: str


def echo_app(limit: int, rejected: list[int]) -> FastAPI:
    """An app behind the gateway's middleware, in the gateway's order (key check outermost)."""
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return validation_error(exc)

    @app.post("/v1/echo")
    async def echo(body: Body) -> dict[str, str]:
        return {"model": body.model}

    app.add_middleware(BodyLimit, limit=limit)
    app.add_middleware(
        ApiKeyCheck, keys=ApiKeys(f"acme:{digest(KEY)}"), rejected=lambda: rejected.append(1)
    )
    return app


async def post(app: FastAPI, content: bytes, key: str | None = KEY):
    headers = {"content-type": "application/json"}
    headers |= {"authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.post("/v1/echo", content=content, headers=headers)


async def test_the_key_is_checked_before_the_body() -> None:
    rejected: list[int] = []
    reply = await post(echo_app(10, rejected), b"x" * 100, key="sk-unknown")
    assert reply.status_code == 401 and rejected == [1]
    assert reply.json() == {
        "error": {
            "message": "Incorrect or missing API key: send `Authorization: Bearer <key>`",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


async def test_a_body_declared_over_the_limit_is_a_413() -> None:
    reply = await post(echo_app(50, []), b"x" * 100)
    assert reply.status_code == 413
    assert reply.json() == {
        "error": {
            "message": "request body over 50 bytes (WRP_MAX_REQUEST_BYTES)",
            "type": "invalid_request_error",
            "param": None,
            "code": "too_large",
        }
    }


async def chunked(app: FastAPI, chunks: list[bytes]) -> tuple[int, dict]:
    """POST ``chunks`` as a body that declares no length (chunked transfer); the status and JSON."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/echo",
        "raw_path": b"/v1/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            (b"authorization", f"Bearer {KEY}".encode()),
        ],
        "server": ("gw", 80),
        "client": ("127.0.0.1", 1234),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


async def test_a_chunked_body_over_the_limit_is_a_413_and_one_within_it_arrives_whole() -> None:
    status, reply = await chunked(echo_app(50, []), [b'{"model": "', b"x" * 30, b'"}'] * 2)
    assert status == 413 and reply["error"]["code"] == "too_large"
    assert await chunked(echo_app(50, []), [b'{"model": ', b'"gpt"}']) == (200, {"model": "gpt"})


async def test_schema_errors_name_the_field_and_bad_json_says_so() -> None:
    app = echo_app(1000, [])
    missing = (await post(app, b"{}")).json()["error"]
    assert missing["param"] == "model" and missing["code"] == "missing_required_parameter"
    assert missing["message"] == "Missing required parameter: 'model'."
    broken = await post(app, b'{"model": ')
    assert broken.status_code == 400
    assert broken.json()["error"]["message"].startswith(
        "We could not parse the JSON body of your request at character"
    )
    assert (await post(app, json.dumps({"model": "m"}).encode())).json() == {"model": "m"}


@pytest.mark.parametrize(
    ("kind", "status", "kind_of_error", "param"),
    [
        ("model_not_found", 404, "invalid_request_error", "model"),
        ("context_length_exceeded", 400, "invalid_request_error", "messages"),
        ("rate_limit_exceeded", 429, "requests", None),
        ("insufficient_quota", 429, "insufficient_quota", None),
        ("pool_unavailable", 503, "server_error", None),
        ("pool_unauthorized", 502, "server_error", None),
        ("something_new", 500, "server_error", None),
    ],
)
def test_a_pipeline_error_type_becomes_its_status_and_openai_type(
    kind: str, status: int, kind_of_error: str, param: str | None
) -> None:
    reply = pipeline_error(kind, "why", {"retry-after": "3"})
    assert reply.status_code == status and reply.headers["retry-after"] == "3"
    assert json.loads(reply.body) == {
        "error": {"message": "why", "type": kind_of_error, "param": param, "code": kind}
    }


def test_refused_parameters_no_model_and_n_above_one() -> None:
    message = [{"role": "user", "content": "hi"}]
    assert refused_parameter(ChatRequest(model="auto", messages=message)) is None
    assert refused_parameter(ChatRequest(model="auto", messages=message, n=1)) is None
    no_model = refused_parameter(ChatRequest(messages=message))
    assert no_model is not None and json.loads(no_model.body)["error"]["param"] == "model"
    several = refused_parameter(ChatRequest(model="auto", messages=message, n=2))
    assert several is not None and json.loads(several.body)["error"]["code"] == "unsupported_value"


def test_completions_get_the_keys_openai_always_sends() -> None:
    shaped = completion_in_openai_shape(
        {"id": "c", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
    )
    assert shaped["choices"] == [
        {
            "logprobs": None,
            "index": 0,
            "message": {"content": "hi", "refusal": None, "role": "assistant"},
        }
    ]
    assert model_card("auto", 7) == {
        "id": "auto",
        "object": "model",
        "created": 7,
        "owned_by": "wrp",
    }


def test_an_answer_without_a_decision_still_says_it_was_not_blocked() -> None:
    request = RequestSection(
        tenant="acme", body=ChatRequest(model="auto", messages=[{"role": "user", "content": "x"}])
    )
    env = Envelope(request=request)
    assert answer_headers(env) == {
        "x-wrp-request-id": request.request_id,
        "x-wrp-blocked": "false",
    }
