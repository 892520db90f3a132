"""The stages by name: which exist, the topics each consumes, and building one (``a+b+c``
fuses batch stages in that order, :class:`~pipeline.bus.fused.FusedStage`)."""

from __future__ import annotations

from pipeline.bus.catalog import CREDITS, FEEDBACK, OUTCOMES
from pipeline.bus.fused import FusedStage
from pipeline.bus.stage import Stage
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


def build_stage(name: str, settings: Settings) -> Stage:
    """The stage called ``name``; ``a+b+c`` fuses batch stages in that order."""
    classes = stage_classes()
    names = name.split("+")
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(classes)}")
    parts = [classes[n](settings) for n in names]
    return parts[0] if len(parts) == 1 else FusedStage(settings, parts)
