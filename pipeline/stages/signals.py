"""signals stage: wrp.requests -> Workload signals (one encoder pass, heads, tool selection)
-> wrp.signals."""

from __future__ import annotations

import asyncio

from pipeline.bus.catalog import REQUESTS, SIGNALS
from pipeline.bus.stage import Inbound, Outbound, Output, Stage
from pipeline.envelope import Envelope, now
from pipeline.models.encoder import load_encoder
from pipeline.policy import load_policy
from pipeline.workload.extractor import SignalExtractor


class SignalsStage(Stage):
    name = "signals"
    topics = (REQUESTS,)
    refuses = ("signals", "safety", "decision", "result", "outcome")

    extractor: SignalExtractor

    async def start(self) -> None:
        s = self.settings
        encoder = load_encoder(
            s.model_dir, s.encoder_threads, s.encoder_max_tokens, s.encoder_batch
        )
        self.extractor = SignalExtractor(load_policy(s.policy), encoder, s.learned_signals)

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
        return [  # the request goes on with only the tools tool selection kept
            Outbound(SIGNALS, env.key, env.advance(self.name, started, request=r, signals=s))
            for env, r, s in zip(envelopes, narrowed, signals, strict=True)
        ]
