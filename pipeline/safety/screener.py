"""Safety for a batch of requests: trained heads on the shared embedding, contrastive examples,
per-session risk, PII and moderation, turned into verdicts by the tenant's policy.

Used by the safety stage and by ``wrp bench classify`` (same code, no broker).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.envelope import Envelope, Safety
from pipeline.models.heads import load_trained
from pipeline.policy import ContrastiveConfig, Policy
from pipeline.safety.screen import Scores, verdict
from pipeline.sessions import SessionMemory

ATTACK = "attack"


class Contrastive:
    """max cosine to attack examples minus max cosine to benign examples."""

    def __init__(self, config: ContrastiveConfig, embed: Callable[[list[str]], np.ndarray]):
        self.margin = config.margin
        self.attack = embed(config.attack)
        self.benign = embed(config.benign)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return (embeddings @ self.attack.T).max(axis=1) - (embeddings @ self.benign.T).max(axis=1)


class Screener:
    def __init__(
        self, policy: Policy, encoder_name: str, embed: Callable[[list[str]], np.ndarray]
    ) -> None:
        self.policy = policy
        self.jailbreak = load_trained("jailbreak", encoder_name)
        self.moderation = load_trained("moderation", encoder_name)
        self._attack = self.jailbreak.labels.index(ATTACK)
        config = policy.safety.jailbreak
        self.contrastive = Contrastive(config.contrastive, embed) if config.contrastive else None
        self.risk: SessionMemory[float] = SessionMemory(policy.signals.session_ttl_s)
        self.versions = {"jailbreak": self.jailbreak.version, "moderation": self.moderation.version}
        if self.contrastive:
            self.versions["contrastive"] = f"examples@{len(config.contrastive.attack)}"  # type: ignore[union-attr]

    @property
    def jailbreak_threshold(self) -> float:
        configured = self.policy.safety.jailbreak.threshold
        return configured if configured is not None else float(self.jailbreak.meta["threshold"])

    def screen(self, envelopes: list[Envelope]) -> list[Safety]:
        """A verdict per envelope; each must carry signals (with the embedding)."""
        if not envelopes:
            return []
        x = np.stack([env.signals.embedding_vector() for env in envelopes])  # type: ignore[union-attr]
        attack = self.jailbreak.predict(x)[:, self._attack]
        moderation = self.moderation.predict(x)
        contrast = self.contrastive.score(x) if self.contrastive else None
        verdicts = []
        for i, env in enumerate(envelopes):
            body = env.request.body
            assert body is not None
            config = self.policy.safety.for_tenant(env.request.tenant)
            scores = Scores(
                jailbreak=float(attack[i]),
                jailbreak_threshold=self.jailbreak_threshold,
                contrastive=None if contrast is None else float(contrast[i]),
                contrastive_margin=self.contrastive.margin if self.contrastive else None,
                session_risk=self._session_risk(env.request.session_id, float(attack[i])),
                moderation=dict(zip(self.moderation.labels, moderation[i].tolist(), strict=True)),
            )
            verdicts.append(verdict(body, scores, config, self.versions))
        return verdicts

    def _session_risk(self, session: str | None, score: float) -> float:
        """EMA of the session's per-turn jailbreak scores (0 before its first turn)."""
        if session is None:
            return 0.0
        alpha = self.policy.safety.jailbreak.session_alpha
        risk = alpha * score + (1 - alpha) * (self.risk.get(session) or 0.0)
        self.risk.put(session, risk)
        return risk
