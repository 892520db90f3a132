"""signals stage: wrp.requests -> Workload signals (one encoder pass, heads, tool selection)
-> wrp.signals; and, when a session's next user turn says something about the previous answer,
implicit feedback for that answer -> wrp.feedback (``pipeline.learn.implicit``)."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from pipeline.bus.catalog import FEEDBACK, REQUESTS, SIGNALS
from pipeline.bus.stage import Inbound, Outbound, Output, Stage
from pipeline.envelope import Envelope, now
from pipeline.learn.implicit import NextTurnReader
from pipeline.models.encoder import load_encoder
from pipeline.policy import load_policy
from pipeline.workload.extractor import SignalExtractor


class SignalsStage(Stage):
    name = "signals"
    topics = (REQUESTS,)
    refuses = ("signals", "safety", "decision", "result", "outcome")

    extractor: SignalExtractor
    next_turns: NextTurnReader | None
    implicit_labels: Counter

    async def start(self) -> None:
        s = self.settings
        encoder = load_encoder(
            s.model_dir, s.encoder_threads, s.encoder_max_tokens, s.encoder_batch
        )
        policy = load_policy(s.policy)
        self.extractor = SignalExtractor(policy, encoder, s.learned_signals)
        implicit = policy.router.learning.implicit
        self.next_turns = (
            NextTurnReader(implicit, [policy.safety.refusal]) if implicit.enabled else None
        )
        self.implicit_labels = Counter(
            "wrp_signals_implicit_feedback",
            "implicit feedback read from sessions' next turns, by label",
            ["label"],
            registry=self.metrics.registry,
        )

    async def process(self, batch: list[Inbound]) -> list[Output]:
        started = now()
        envelopes: list[Envelope] = [item.message for item in batch]  # type: ignore[misc]
        requests = [e.request for e in envelopes]  # admission let in only those with a body
        if self.settings.learned_signals:  # the encoder runs apart, the loop serves meanwhile
            narrowed, signals = await asyncio.to_thread(self.extractor.extract_narrowed, requests)
        else:  # structural signals take microseconds: a thread hop would cost more
            narrowed, signals = self.extractor.extract_narrowed(requests)
        timings = self.extractor.timings
        for part in ("encoder", "heads", "other"):
            self.metrics.model_seconds.labels(part=part).observe(getattr(timings, part))
        outputs: list[Output] = []
        for env, request, found in zip(envelopes, narrowed, signals, strict=True):
            # the request goes on with only the tools tool selection kept
            advanced = env.advance(self.name, started, request=request, signals=found)
            outputs.append(Outbound(SIGNALS, env.key, advanced))
            judged = self.next_turns.read(request, found) if self.next_turns else None
            if judged is not None:
                self.implicit_labels.labels(label=judged.implicit).inc()
                outputs.append(Outbound(FEEDBACK, judged.request_id, judged))
        return outputs
