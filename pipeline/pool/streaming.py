"""Relaying a streamed answer onto ``wrp.stream`` as the pool generates it.

Chunk events are coalesced for at most :data:`FLUSH_MS` before they go out as one
:class:`~pipeline.envelope.StreamChunks` record, so a fast pool costs a record per few tokens, not
one per token, while the first tokens still leave within milliseconds. Records of one request are
sent in order, on its key; the last one says ``done`` (and carries the error when the call failed
after the stream began). Every record carries the request id as a Kafka header, so a follower
skips the streams it does not wait for without decoding them. A :class:`ChunkFilter` (answer
screening) sees the chunks before they are relayed, and may hold them back, rewrite or end them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pipeline.bus.catalog import STREAM
from pipeline.bus.clients import Producer
from pipeline.bus.codec import REQUEST_ID_HEADER, encode
from pipeline.envelope import ErrorInfo, StreamChunks

#: Longest a chunk waits for company before it is sent.
FLUSH_MS = 5


class ChunkFilter(Protocol):
    def feed(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chunks to relay now."""
        ...

    def finish(self) -> list[dict[str, Any]]:
        """The chunks still held when the pool is done."""
        ...


class StreamRelay:
    """One request's stream: :meth:`relay` takes chunks as they arrive, :meth:`close` ends it."""

    def __init__(
        self,
        producer: Producer,
        request_id: str,
        decision: str,
        model: str,
        pool: str,
        screen: ChunkFilter | None = None,
    ) -> None:
        self.producer = producer
        self.screen = screen
        self.request_id = request_id
        self.head = {"decision": decision, "model": model, "pool": pool}
        self.seq = 0
        self._buffer: list[dict[str, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()
        self._sent: list[asyncio.Future[Any]] = []

    async def relay(self, chunks: list[dict[str, Any]]) -> None:
        self._buffer.extend(self.screen.feed(chunks) if self.screen is not None else chunks)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def close(self, error: ErrorInfo | None = None) -> None:
        """Send what is left with ``done`` and wait until every record of the stream is acked."""
        if self._flusher is not None:
            await self._flusher
        if self.screen is not None:
            self._buffer.extend(self.screen.finish())
        await self._send(done=True, error=error)
        await asyncio.gather(*self._sent)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_MS / 1000)
        await self._send()

    async def _send(self, done: bool = False, error: ErrorInfo | None = None) -> None:
        async with self._sending:
            if not self._buffer and not done:
                return
            record = StreamChunks(
                request_id=self.request_id,
                seq=self.seq,
                chunks=self._buffer,
                done=done,
                error=error,
                **self.head,
            )
            self._buffer = []
            self.seq += 1
            self._sent.append(
                await self.producer.send(
                    STREAM,
                    encode(record),
                    key=self.request_id.encode(),
                    headers=[(REQUEST_ID_HEADER, self.request_id.encode())],
                )
            )
