"""safety stage: wrp.signals -> verdict -> wrp.screened (blocks answered on reply_to at once)."""

from __future__ import annotations

import asyncio
import time

from pipeline.bus.catalog import SCREENED, SIGNALS
from pipeline.bus.stage import Inbound, Outbound, Output, Stage
from pipeline.envelope import Envelope, Result, now
from pipeline.models.encoder import load_encoder
from pipeline.policy import load_policy
from pipeline.safety.screener import Screener
from pipeline.safety.verdict import redact_request, refusal_response, to_redact


class SafetyStage(Stage):
    name = "safety"
    topics = (SIGNALS,)
    requires = ("signals",)
    refuses = ("safety", "decision", "result", "outcome")

    screener: Screener

    async def start(self) -> None:
        s = self.settings
        encoder = None
        if s.learned_signals:  # reads windows the signals stage's embedding does not cover
            encoder = load_encoder(
                s.model_dir, s.encoder_threads, s.encoder_max_tokens, s.encoder_batch
            )
        self.screener = Screener(load_policy(s.policy), encoder)

    async def process(self, batch: list[Inbound]) -> list[Output]:
        started = now()
        envelopes: list[Envelope] = [item.message for item in batch]  # type: ignore[misc]
        t0 = time.perf_counter()
        if self.settings.learned_signals:  # the heads run apart, the loop serves meanwhile
            verdicts = await asyncio.to_thread(self.screener.screen, envelopes)
        else:  # PII patterns alone take microseconds: a thread hop would cost more
            verdicts = self.screener.screen(envelopes)
        self.metrics.model_seconds.labels(part="screen").observe(time.perf_counter() - t0)
        outputs: list[Output] = []
        for env, verdict in zip(envelopes, verdicts, strict=True):
            body = env.request.body
            assert body is not None
            config = self.screener.config_for(env.request.tenant)
            if verdict.action == "block":
                result = Result(
                    status="blocked", response=refusal_response(config.refusal), stage=self.name
                )
                closed = env.advance(self.name, started, safety=verdict, result=result)
                outputs.append(Outbound(env.request.reply_to, env.key, closed))
                continue
            if verdict.redacted:
                redacted = redact_request(body, to_redact(verdict.pii, config))
                request = env.request.model_copy(update={"body": redacted})
                env = env.model_copy(update={"request": request})
            outputs.append(
                Outbound(SCREENED, env.key, env.advance(self.name, started, safety=verdict))
            )
        return outputs
