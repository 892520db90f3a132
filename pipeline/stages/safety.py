"""safety stage: wrp.signals -> jailbreak + PII verdict -> wrp.screened (or a refusal, at once)."""

from __future__ import annotations

import time
import uuid

import numpy as np

from pipeline.bus.catalog import SCREENED, SIGNALS
from pipeline.bus.runner import Inbound, Outbound, Rejected, Stage
from pipeline.envelope import Envelope, Result, now
from pipeline.models.encoder import load_encoder
from pipeline.policy import Policy, load_policy
from pipeline.safety.jailbreak import ExampleSimilarity
from pipeline.safety.screen import redact_request, screen

SAFETY_MODEL = "wrp-safety"


def refusal_response(text: str) -> dict:
    """An OpenAI chat completion that refuses, as a content filter would."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": SAFETY_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "content_filter",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


class SafetyStage(Stage):
    name = "safety"
    topics = (SIGNALS,)
    requires = ("signals",)

    policy: Policy
    jailbreak: ExampleSimilarity

    async def start(self) -> None:
        self.policy = load_policy(self.settings.policy)
        encoder = load_encoder(self.settings.model_dir)
        self.jailbreak = ExampleSimilarity(encoder.encode(self.policy.safety.jailbreak.examples))

    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        started = now()
        envelopes: list[Envelope] = [item.message for item in batch]  # type: ignore[misc]
        vectors = np.stack([env.signals.embedding_vector() for env in envelopes])  # type: ignore[union-attr]
        scores = self.jailbreak.score(vectors)
        config = self.policy.safety
        outputs: list[Outbound | Rejected] = []
        for env, score in zip(envelopes, scores, strict=True):
            body = env.request.body
            assert body is not None
            verdict = screen(body, float(score), config)
            if verdict.action == "block":
                result = Result(
                    status="blocked", response=refusal_response(config.refusal), stage=self.name
                )
                closed = env.advance(self.name, started, safety=verdict, result=result)
                outputs.append(Outbound(env.request.reply_to, env.key, closed))
                continue
            if verdict.action == "redact":
                env = env.model_copy(
                    update={
                        "request": env.request.model_copy(
                            update={"body": redact_request(body, verdict.pii)}
                        )
                    }
                )
            outputs.append(
                Outbound(SCREENED, env.key, env.advance(self.name, started, safety=verdict))
            )
        return outputs
