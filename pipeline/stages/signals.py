"""signals stage: wrp.requests -> structural signals + one encoder pass + domain -> wrp.signals."""

from __future__ import annotations

import asyncio

import numpy as np

from pipeline.bus.catalog import REQUESTS, SIGNALS
from pipeline.bus.runner import Inbound, Outbound, Rejected, Rejection, Stage
from pipeline.envelope import Envelope, Signals, now
from pipeline.models.encoder import Encoder, load_encoder
from pipeline.policy import Policy, load_policy
from pipeline.workload.domain import CentroidClassifier
from pipeline.workload.structural import extract_structural, routing_text


class SignalsStage(Stage):
    name = "signals"
    topics = (REQUESTS,)

    policy: Policy
    encoder: Encoder
    domains: CentroidClassifier

    async def start(self) -> None:
        self.policy = load_policy(self.settings.policy)
        self.encoder = load_encoder(self.settings.model_dir)
        self.domains = CentroidClassifier.from_examples(
            {
                name: self.encoder.encode(texts)
                for name, texts in self.policy.signals.domains.items()
            }
        )

    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        started = now()
        envelopes: list[Envelope] = [item.message for item in batch]  # type: ignore[misc]
        readable = [env.request.body is not None for env in envelopes]
        texts = [routing_text(env.request.body) for env in envelopes if env.request.body]
        embeddings = await asyncio.to_thread(self.encoder.encode, texts)
        domains = iter(self.domains.classify(embeddings))
        vectors = iter(embeddings)
        outputs: list[Outbound | Rejected] = []
        for item, env, ok in zip(batch, envelopes, readable, strict=True):
            if not ok:
                outputs.append(
                    Rejected(
                        item,
                        Rejection(
                            "invalid_schema",
                            "request.body is required: an OpenAI chat-completions body",
                        ),
                    )
                )
                continue
            assert env.request.body is not None
            structure = extract_structural(
                env.request.body, self.encoder.count_tokens, self.policy.signals.context_classes
            )
            domain, score = next(domains)
            signals = Signals(
                **structure.__dict__,
                domain=domain,
                domain_score=round(score, 4),
                embedding=Signals.encode_embedding(np.asarray(next(vectors))),
                encoder=self.encoder.name,
            )
            outputs.append(
                Outbound(SIGNALS, env.key, env.advance(self.name, started, signals=signals))
            )
        return outputs
