"""OpenAI's error response shape, used by the gateway and the simulated pools.

``{"error": {"message", "type", "param", "code"}}``: ``type`` is OpenAI's class of error
(``invalid_request_error``, ``server_error``, ...), ``code`` a string naming the error or null.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse


def openai_error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status,
        headers=headers,
    )
