"""Fused stages (``wrp stage signals+safety+router+dispatch``): consecutive stages in one process,
each batch handed from one to the next in memory instead of through Kafka.

The last part may have pending work (dispatch's pool calls): the runner finishes each record's on
its own, so the fused process answers every request as soon as its pool does. What one part
hands to the next (``wrp.signals``, ``wrp.screened``, ``wrp.routed``) is not produced unless
``WRP_FUSED_INTERMEDIATE`` is set (for whoever tails those topics): the hops and their broker
round trips are what fusing saves. Run a fused stage *instead of* the stages it fuses: it has its
own consumer group (``wrp-signals+safety+router+dispatch``), and separate later stages would
process the intermediate topics a second time. Offsets are committed for the first stage's topic
once every output of the whole chain is acknowledged, so the chain is replayed as one on a crash.
"""

from __future__ import annotations

from collections import deque

from fastapi import FastAPI

from pipeline.bus.stage import Inbound, Outbound, Output, Pending, Stage
from pipeline.settings import Settings
from pipeline.tracing import Tracing


class FusedStage(Stage):
    """Runs ``parts`` in order; what one emits on the next one's topic is handed over."""

    topics = ()  # set per instance from the first part

    def __init__(self, settings: Settings, parts: list[Stage]) -> None:
        super().__init__(settings)
        concurrent = [p.name for p in parts[:-1] if p.concurrency]
        if concurrent:
            raise ValueError(
                f"a stage with pending work ({', '.join(concurrent)}) can only be fused last"
            )
        self.parts = parts
        self.name = "+".join(p.name for p in parts)  # type: ignore[misc]
        self.topics = parts[0].topics  # type: ignore[misc]
        self.requires = parts[0].requires  # type: ignore[misc]
        self.refuses = parts[0].refuses  # type: ignore[misc]
        self.request_path = parts[0].request_path  # type: ignore[misc]
        self.concurrency = parts[-1].concurrency  # type: ignore[misc]

    def batch_limits(self) -> tuple[int, int]:
        return self.parts[0].batch_limits()

    async def start(self) -> None:
        for part in self.parts:
            part.metrics = self.metrics
            await part.start()

    async def stop(self) -> None:
        for part in reversed(self.parts):
            await part.stop()

    def add_routes(self, app: FastAPI) -> None:
        for part in self.parts:
            part.add_routes(app)

    def accepting(self) -> bool:
        return all(part.accepting() for part in self.parts)

    async def process(self, batch: list[Inbound]) -> list[Output | Pending]:
        return await self.process_traced(batch, Tracing())

    async def process_traced(
        self, batch: list[Inbound], tracing: Tracing
    ) -> list[Output | Pending]:
        """Each part in its own span per request, the next part's a child of the previous."""
        emitted: list[Output | Pending] = []
        items = batch
        for part, following in zip(self.parts, [*self.parts[1:], None], strict=True):
            outputs = await part.process_traced(items, tracing)
            if following is None:
                emitted.extend(outputs)
                break
            items, rest = _hand_over(outputs, items, following.topics)
            emitted.extend(outputs if self.settings.fused_intermediate else rest)
            if not items:
                break
        return emitted


def _hand_over(
    outputs: list[Output | Pending], inputs: list[Inbound], topics: tuple[str, ...]
) -> tuple[list[Inbound], list[Output | Pending]]:
    """(the outputs on the next stage's topics, as its input; the other outputs). A handed-over
    record keeps the topic, partition and offset of the record the chain consumed: dead letters
    point at a real record, and the runner counts the right one done."""
    by_request: dict[str | None, deque[Inbound]] = {}
    for item in inputs:  # a request id twice in a batch (a redelivery): each keeps its record
        by_request.setdefault(_request_id(item.message), deque()).append(item)
    handed, rest = [], []
    for out in outputs:
        if isinstance(out, Outbound) and out.topic in topics:
            sources = by_request.get(_request_id(out.message))
            # an output no input accounts for holds the batch's first record back instead
            source = sources.popleft() if sources else inputs[0]
            handed.append(
                Inbound(
                    source.topic,
                    source.partition,
                    source.offset,
                    b"",
                    out.message,
                    source.timestamp,
                    out.traceparent,
                )
            )
        else:
            rest.append(out)
    return handed, rest


def _request_id(message: object) -> str | None:
    request = getattr(message, "request", None)
    return getattr(request, "request_id", None)
