"""OpenAI's error response shape, used by the gateway and the simulated pools.

``{"error": {"message", "type", "param", "code"}}``: ``type`` is OpenAI's class of error
(``invalid_request_error``, ``server_error``, ...), ``code`` a string naming the error or null.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def error_body(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The ``{"error": ...}`` object itself, for a response or a streamed event."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, kind, code, param),
        status_code=status,
        headers=headers,
    )
