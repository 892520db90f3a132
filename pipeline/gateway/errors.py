"""The gateway's errors in OpenAI's error shape (:func:`pipeline.openai_errors.openai_error`).

A pipeline error type (``result.error.type``) becomes its HTTP status, OpenAI's ``type`` and
``param``, with the pipeline's type as ``code``; a schema error names its field; a missing or
unknown API key is a 401; parameters WRP does not serve are refused with a 400.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipeline.envelope import ChatRequest
from pipeline.openai_errors import openai_error

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
#: The error statuses of the ``/v1/`` routes, as OpenAPI ``responses``.
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


def unauthorized_error() -> JSONResponse:
    return openai_error(
        401,
        "Incorrect or missing API key: send `Authorization: Bearer <key>`",
        code="invalid_api_key",
    )


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
