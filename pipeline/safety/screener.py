"""Safety for a batch of requests: trained heads on the shared embedding, contrastive examples,
per-session risk, PII and moderation, turned into verdicts by the tenant's policy.

Used by the safety stage and by ``wrp bench classify`` (same code, no broker).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.envelope import Envelope, Safety
from pipeline.models.heads import Head, load_trained
from pipeline.policy import ContrastiveConfig, Policy, SafetyConfig
from pipeline.safety.screen import Scores, verdict
from pipeline.sessions import SessionMemory


def head_thresholds(head: Head, config: SafetyConfig) -> dict[str, float]:
    """Per risk class: the policy's threshold when set, else the one the head was trained with."""
    trained = head.meta["thresholds"]
    return {
        "jailbreak": trained["jailbreak"]
        if config.jailbreak.threshold is None
        else config.jailbreak.threshold,
        "harmful": trained["harmful"]
        if config.harmful.threshold is None
        else config.harmful.threshold,
    }


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
        self,
        policy: Policy,
        encoder_name: str,
        max_tokens: int,
        embed: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        """``embed`` encodes the policy's contrastive examples; needed only when it has some."""
        self.policy = policy
        self.jailbreak = load_trained("jailbreak", encoder_name, max_tokens)
        self.moderation = load_trained("moderation", encoder_name, max_tokens)
        self.thresholds = head_thresholds(self.jailbreak, policy.safety)
        configured = policy.safety.moderation.threshold
        self.moderation_thresholds: dict[str, float] = (
            dict.fromkeys(self.moderation.labels, configured)
            if configured is not None
            else self.moderation.meta["thresholds"]
        )
        self._classes = {
            c: self.jailbreak.labels.index(c) for c in ("benign", "jailbreak", "harmful")
        }
        config = policy.safety.jailbreak
        self.risk: SessionMemory[float] = SessionMemory(policy.signals.session_ttl_s)
        self._tenant_configs: dict[str, SafetyConfig] = {}
        self.versions = {"jailbreak": self.jailbreak.version, "moderation": self.moderation.version}
        self.contrastive: Contrastive | None = None
        if config.contrastive:
            if embed is None:
                raise ValueError(
                    "the policy has contrastive examples: give an encoder to embed them"
                )
            self.contrastive = Contrastive(config.contrastive, embed)
            self.versions["contrastive"] = f"examples@{len(config.contrastive.attack)}"

    def screen(self, envelopes: list[Envelope]) -> list[Safety]:
        """A verdict per envelope; each must carry signals. Without an embedding (learned
        signals off) the learned detectors see nothing and only PII patterns act."""
        if not envelopes:
            return []
        embedded = [i for i, env in enumerate(envelopes) if env.signals and env.signals.embedding]
        benign = self._classes["benign"]
        risk = np.zeros((len(envelopes), len(self.jailbreak.labels)))
        risk[:, benign] = 1.0
        moderation = np.zeros((len(envelopes), len(self.moderation.labels)))
        contrast = None
        if embedded:
            x = np.stack([envelopes[i].signals.embedding_vector() for i in embedded])  # type: ignore[union-attr]
            risk[embedded] = self.jailbreak.predict(x)
            moderation[embedded] = self.moderation.predict(x)
            if self.contrastive:
                contrast = np.zeros(len(envelopes))
                contrast[embedded] = self.contrastive.score(x)
        verdicts = []
        for i, env in enumerate(envelopes):
            body = env.request.body
            assert body is not None
            config = self.config_for(env.request.tenant)
            turn_risk = 1.0 - float(risk[i, self._classes["benign"]])
            scores = Scores(
                jailbreak=float(risk[i, self._classes["jailbreak"]]),
                harmful=float(risk[i, self._classes["harmful"]]),
                thresholds=self.thresholds,
                contrastive=None if contrast is None or i not in embedded else float(contrast[i]),
                contrastive_margin=self.contrastive.margin if self.contrastive else None,
                session_risk=self._session_risk(env.request.session_scope, turn_risk),
                moderation=dict(zip(self.moderation.labels, moderation[i].tolist(), strict=True)),
                moderation_thresholds=self.moderation_thresholds,
            )
            verdicts.append(verdict(body, scores, config, self.versions))
        return verdicts

    def config_for(self, tenant: str) -> SafetyConfig:
        """The tenant's effective safety policy, built once per tenant."""
        config = self._tenant_configs.get(tenant)
        if config is None:
            config = self._tenant_configs[tenant] = self.policy.safety.for_tenant(tenant)
        return config

    def _session_risk(self, session: tuple[str, str] | None, score: float) -> float:
        """EMA of the session's per-turn risk, 1 - P(benign) (0 before its first turn)."""
        if session is None:
            return 0.0
        alpha = self.policy.safety.jailbreak.session_alpha
        risk = alpha * score + (1 - alpha) * (self.risk.get(session) or 0.0)
        self.risk.put(session, risk)
        return risk
