"""The gateway's ASGI middleware: the API key before anything else, then the body limit.

Both answer before FastAPI reads the body, so a caller without a key learns that first (as at
OpenAI) and an oversized body is refused as it streams in, never held whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipeline.api_keys import ApiKeys
from pipeline.gateway.errors import unauthorized_error
from pipeline.openai_errors import openai_error


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, counted as it streams in.

    The body is read here, up to the limit, and handed to the app whole: the app reads it whole
    anyway, and an error raised while the app reads would come out as FastAPI's 400 "error
    parsing the body" instead of the 413 (for a chunked body, which declares no length).
    """

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
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body arrived: nobody to answer
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await self._reject(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        whole: list[dict] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return whole.pop() if whole else await receive()

        await self.app(scope, replayed, send)

    async def _reject(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = openai_error(
            413, f"request body over {self.limit} bytes (WRP_MAX_REQUEST_BYTES)", code="too_large"
        )
        await response(scope, receive, send)


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
