"""An OpenAI-compatible endpoint that fails on purpose, one failure mode per path prefix:
``http://127.0.0.1:PORT/<mode>`` is a base URL dispatch appends ``/v1/chat/completions`` to.
A ``switch-<name>`` prefix behaves as :data:`SWITCHES` says at the time (``ok`` until set), so a
test can take endpoints down and bring them back."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipeline.http_server import serve_http

MODES = ("ok", "slow", "500", "429", "garbage", "half", "hang", "400", "hold")
#: ``switch-<name>`` -> the mode it answers with now (the server runs in the test process).
SWITCHES: dict[str, str] = {}
#: ``hold`` streams its first part, sets HOLDING, and finishes only once RELEASE is set.
HOLDING, RELEASE = threading.Event(), threading.Event()
#: The first part ``hold`` streams: longer than the two windows answer screening reads before
#: it releases the first one (safety.answers.window_chars).
HELD_FIRST = " ".join(["first"] * 100)


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'id': 'x', 'model': 'm', 'choices': [choice]})}\n\n".encode()


def _plain(mode: str) -> Response:
    """A whole answer; broken JSON for ``garbage``; for ``half``, the connection closes half way
    through the body its Content-Length announced."""
    if mode == "garbage":
        return Response(b"{this is not json", media_type="application/json")
    message = {"role": "assistant", "content": "plain answer"}
    answer = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    ).encode()
    if mode != "half":
        return Response(answer, media_type="application/json")

    async def cut() -> AsyncIterator[bytes]:
        yield answer[: len(answer) // 2]

    headers = {"content-length": str(len(answer))}
    return StreamingResponse(cut(), media_type="application/json", headers=headers)


def fault_app() -> FastAPI:
    app = FastAPI()

    @app.post("/{mode}/v1/chat/completions", response_model=None)
    async def chat(mode: str, request: Request) -> Response:
        streamed = json.loads(await request.body()).get("stream", False)
        if mode.startswith("switch-"):
            mode = SWITCHES.get(mode, "ok")
        if mode in ("500", "429", "400"):
            return JSONResponse(
                {"error": {"message": f"injected {mode}", "type": "fault"}}, status_code=int(mode)
            )
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "slow":
            await asyncio.sleep(0.3)
        if not streamed:
            return _plain(mode)

        async def stream() -> AsyncIterator[bytes]:
            if mode == "garbage":
                yield b"data: {this is not json\n\n"
                return
            if mode == "hold":
                yield _chunk(HELD_FIRST)
                HOLDING.set()
                await asyncio.to_thread(RELEASE.wait, 60)
                yield _chunk(" second")
                yield _chunk(None, "stop")
                yield b"data: [DONE]\n\n"
                return
            yield _chunk("partial answer")
            if mode == "half":
                return
            yield _chunk(None, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


def start_fault_server(port: int) -> None:
    """Serve :func:`fault_app` on ``port`` from a daemon thread for the rest of the session."""
    started = threading.Event()

    async def main() -> None:
        await serve_http(fault_app(), port)
        started.set()
        await asyncio.Event().wait()

    threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
    if not started.wait(10):
        raise RuntimeError(f"fault server did not start on port {port}")
