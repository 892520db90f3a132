"""Fused stages (``wrp stage signals+safety+router``): consecutive stages in one process, each
batch handed from one to the next in memory instead of through Kafka.

Every output is still produced, intermediate topics included (``wrp.signals``,
``wrp.screened``), so analytics and anyone tailing them see the same records; only the consumer
hops are gone. Run a fused stage *instead of* the stages it fuses: it has its own consumer group
(``wrp-signals+safety+router``), and separate safety or router stages would process the
intermediate topics a second time. Offsets are committed for the first stage's topic after every
output of the whole chain is acknowledged, so the chain is replayed as one on a crash.
"""

from __future__ import annotations

from fastapi import FastAPI

from pipeline.bus.catalog import CREDITS, FEEDBACK, OUTCOMES
from pipeline.bus.runner import Inbound, Outbound, Rejected, Stage
from pipeline.settings import Settings


def consumed_topics() -> dict[str, tuple[str, ...]]:
    """The topics each stage consumes, the learner (a faust app, not a :class:`Stage`)
    included."""
    topics = {name: cls.topics for name, cls in stage_classes().items()}
    return {**topics, "learner": (OUTCOMES, FEEDBACK, CREDITS)}


def stage_classes() -> dict[str, type[Stage]]:
    from pipeline.stages.analytics import AnalyticsStage
    from pipeline.stages.dispatch import DispatchStage
    from pipeline.stages.router import RouterStage
    from pipeline.stages.safety import SafetyStage
    from pipeline.stages.signals import SignalsStage

    return {
        s.name: s for s in (SignalsStage, SafetyStage, RouterStage, DispatchStage, AnalyticsStage)
    }


class FusedStage(Stage):
    """Runs ``parts`` in order; what one emits on the next one's topic is handed over."""

    topics = ()  # set per instance from the first part

    def __init__(self, settings: Settings, parts: list[Stage]) -> None:
        super().__init__(settings)
        concurrent = [p.name for p in parts if p.concurrency]
        if concurrent:
            raise ValueError(f"only batch stages can be fused, not {', '.join(concurrent)}")
        self.parts = parts
        self.name = "+".join(p.name for p in parts)  # type: ignore[misc]
        self.topics = parts[0].topics  # type: ignore[misc]
        self.requires = parts[0].requires  # type: ignore[misc]
        self.refuses = parts[0].refuses  # type: ignore[misc]
        self.request_path = parts[0].request_path  # type: ignore[misc]

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

    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        emitted: list[Outbound | Rejected] = []
        items = batch
        for part, following in zip(self.parts, [*self.parts[1:], None], strict=True):
            outputs = await part.process(items)
            emitted.extend(outputs)
            if following is None:
                break
            items = _hand_over(outputs, items, following.topics)
            if not items:
                break
        return emitted


def _hand_over(
    outputs: list[Outbound | Rejected], inputs: list[Inbound], topics: tuple[str, ...]
) -> list[Inbound]:
    """The outputs on the next stage's topics, as its input. A handed-over record keeps the
    partition and offset of the record it came from (dead letters then point at a real one)."""
    by_request = {_request_id(item.message): item for item in inputs}
    handed = []
    for out in outputs:
        if isinstance(out, Outbound) and out.topic in topics:
            source = by_request.get(_request_id(out.message), inputs[0])
            handed.append(
                Inbound(
                    out.topic, source.partition, source.offset, b"", out.message, source.timestamp
                )
            )
    return handed


def _request_id(message: object) -> str | None:
    request = getattr(message, "request", None)
    return getattr(request, "request_id", None)


def build_stage(name: str, settings: Settings) -> Stage:
    """The stage called ``name``; ``a+b+c`` fuses batch stages in that order."""
    classes = stage_classes()
    names = name.split("+")
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {', '.join(classes)}")
    parts = [classes[n](settings) for n in names]
    return parts[0] if len(parts) == 1 else FusedStage(settings, parts)
