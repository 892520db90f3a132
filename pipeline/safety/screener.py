"""Safety for a batch of requests: the trained safety and moderation heads over every window the
scan plan reads, contrastive examples, per-session escalation, PII, turned into verdicts by the
tenant's policy.

Used by the safety stage, ``wrp eval safety`` and ``wrp bench classify`` (same code, no broker).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from pipeline.envelope import Envelope, Safety, SafetyHit, SafetyScan
from pipeline.models.encoder import Encoder
from pipeline.models.heads import Head, load_trained
from pipeline.policy import ContrastiveConfig, Policy, SafetyConfig
from pipeline.safety.scan import (
    DETECTORS,
    IN_TOOL,
    ROLE_DETECTORS,
    TOOL_ROLES,
    Plan,
    Window,
    detector_scores,
    plan,
)
from pipeline.safety.verdict import Scores, verdict
from pipeline.sessions import SessionMemory

#: Windows whose scores are remembered (system prompts and earlier turns come back each turn).
REMEMBERED_WINDOWS = 8192
#: Columns of detector scores at the start of a window's row (see ``detector_scores``).
SCORE_COLUMNS = 4
#: Distinct suspicious turns remembered per session.
SESSION_TURNS_KEPT = 32


def head_thresholds(head: Head, config: SafetyConfig) -> dict[str, float]:
    """Per detector: the policy's threshold when set, else the one the head was trained with."""
    trained = head.meta["thresholds"]
    return {
        d: trained[d] if getattr(config, d).threshold is None else getattr(config, d).threshold
        for d in DETECTORS
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
    def __init__(self, policy: Policy, encoder: Encoder | None, head: Head | None = None) -> None:
        """``encoder`` None: the learned detectors are off and PII patterns alone act.
        ``head`` replaces the committed safety head (evaluation of heads trained otherwise)."""
        self.policy = policy
        self.encoder = encoder
        self.sessions: SessionMemory[tuple[bytes, ...]] = SessionMemory(
            policy.signals.session_ttl_s
        )
        self._tenant_configs: dict[str, SafetyConfig] = {}
        self._remembered: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.versions: dict[str, str] = {}
        self.contrastive: Contrastive | None = None
        if encoder is None:
            return
        self.head = head or load_trained("safety", encoder.name, encoder.max_tokens)
        self.moderation = load_trained("moderation", encoder.name, encoder.max_tokens)
        self.thresholds = head_thresholds(self.head, policy.safety)
        self.watch: dict[str, float] = self.head.meta["watch_thresholds"]
        self.moderation_thresholds: dict[str, float] = {
            **self.moderation.meta["thresholds"],
            **policy.safety.moderation.thresholds,
        }
        self.versions = {"safety": self.head.version, "moderation": self.moderation.version}
        config = policy.safety.jailbreak.contrastive
        if config:
            self.contrastive = Contrastive(config, encoder.encode)
            self.versions["contrastive"] = f"examples@{len(config.attack)}"

    def screen(self, envelopes: list[Envelope]) -> list[Safety]:
        """A verdict per envelope; each must carry signals. Without an embedding (learned
        signals off) the learned detectors read nothing and only PII patterns act."""
        learned = [
            i
            for i, env in enumerate(envelopes)
            if self.encoder is not None and env.signals and env.signals.embedding
        ]
        plans = {i: self._plan(envelopes[i]) for i in learned}
        scored = self._score_windows(envelopes, plans)
        verdicts = []
        for i, env in enumerate(envelopes):
            body = env.request.body
            assert body is not None
            config = self.config_for(env.request.tenant)
            scores = (
                self._scores(env, plans[i], scored[i])
                if i in plans
                else Scores({}, None, None, 0, {}, {}, SafetyScan())
            )
            verdicts.append(verdict(body, scores, config, self.versions))
        return verdicts

    def _plan(self, env: Envelope) -> Plan:
        assert self.encoder is not None and env.request.body is not None
        return plan(env.request.body, self.encoder.windows, self.policy.safety.scan)

    def _score_windows(
        self, envelopes: list[Envelope], plans: dict[int, Plan]
    ) -> dict[int, tuple[np.ndarray, int]]:
        """Per envelope: a row per planned window (detector scores, moderation probabilities,
        contrastive score), and how many rows were remembered."""
        keys = {i: [_key(w) for w in p.windows] for i, p in plans.items()}
        fresh: dict[bytes, list[int] | np.ndarray] = {}
        batch: dict[bytes, np.ndarray] = {}  # this batch's rows, whatever the cache evicts
        for i, p in plans.items():
            for key, window in zip(keys[i], p.windows, strict=True):
                if key in batch or key in fresh:
                    continue
                if key in self._remembered:
                    self._remembered.move_to_end(key)  # least recently used goes first
                    batch[key] = self._remembered[key]
                    continue
                routing = envelopes[i].signals
                fresh[key] = (
                    routing.embedding_vector() if window.routing and routing else window.ids
                )
        if fresh:
            known = {k: v for k, v in fresh.items() if isinstance(v, np.ndarray)}
            to_encode = [k for k in fresh if k not in known]
            assert self.encoder is not None
            encoded = self.encoder.encode_ids([fresh[k] for k in to_encode])  # type: ignore[misc]
            vectors = dict(zip(to_encode, encoded, strict=True)) | known
            order = list(fresh)
            rows = self._rows(np.stack([vectors[k] for k in order]))
            for key, row in zip(order, rows, strict=True):
                self._remember(key, row)
                batch[key] = row
        out = {}
        for i in plans:
            remembered = sum(1 for k in keys[i] if k not in fresh)
            rows = [batch[k] for k in keys[i]]
            out[i] = (np.stack(rows) if rows else np.zeros((0, self._width())), remembered)
        return out

    def _width(self) -> int:
        """Columns of a window's row."""
        return SCORE_COLUMNS + len(self.moderation.labels) + (1 if self.contrastive else 0)

    def _rows(self, x: np.ndarray) -> np.ndarray:
        parts = [
            detector_scores(self.head.predict(x), self.head.labels),
            self.moderation.predict(x),
        ]
        if self.contrastive:
            parts.append(self.contrastive.score(x)[:, None])
        return np.concatenate(parts, axis=1)

    def _remember(self, key: bytes, row: np.ndarray) -> None:
        self._remembered[key] = row
        self._remembered.move_to_end(key)
        while len(self._remembered) > REMEMBERED_WINDOWS:
            self._remembered.popitem(last=False)

    def _scores(self, env: Envelope, p: Plan, scored: tuple[np.ndarray, int]) -> Scores:
        rows, remembered = scored
        hits: dict[str, SafetyHit] = {}
        for d, detector in enumerate(DETECTORS):
            readers = [j for j, w in enumerate(p.windows) if detector in ROLE_DETECTORS[w.role]]
            if not readers:
                continue
            column = [
                IN_TOOL.get(detector, d) if p.windows[j].role in TOOL_ROLES else d for j in readers
            ]
            at = max(range(len(readers)), key=lambda k: rows[readers[k], column[k]])
            top = readers[at]
            window: Window = p.windows[top]
            score, threshold = float(rows[top, column[at]]), self.thresholds[detector]
            hits[detector] = SafetyHit(
                detector=detector,
                score=round(score, 4),
                threshold=threshold,
                fired=score >= threshold,
                watch=self.watch[detector],
                message_index=window.message,
                role=window.role,
                window=window.index,
            )
        users = [j for j, w in enumerate(p.windows) if "harmful" in ROLE_DETECTORS[w.role]]
        labels = self.moderation.labels
        first = SCORE_COLUMNS
        moderation = rows[users, first : first + len(labels)]
        top_moderation = moderation.max(axis=0) if users else np.zeros(len(labels))
        contrast = None
        if self.contrastive and users:
            contrast = float(rows[users, -1].max())
        newest = [j for j, w in enumerate(p.windows) if w.role == "user"][:1]
        newest_message = p.windows[newest[0]].message if newest else None
        mine = [j for j, w in enumerate(p.windows) if w.message == newest_message]
        suspicious = any(
            float(rows[j, d]) >= self.watch[detector]
            for j in mine
            for d, detector in enumerate(DETECTORS)
        )
        return Scores(
            hits=hits,
            contrastive=contrast,
            contrastive_margin=self.contrastive.margin if self.contrastive else None,
            session_turns=self._session_turns(env, suspicious),
            moderation=dict(zip(labels, top_moderation.tolist(), strict=True)),
            moderation_thresholds=self.moderation_thresholds,
            scan=SafetyScan(
                messages=p.messages,
                windows=len(p.windows),
                skipped_windows=p.skipped,
                cached_windows=remembered,
            ),
        )

    def config_for(self, tenant: str) -> SafetyConfig:
        """The tenant's effective safety policy, built once per tenant."""
        config = self._tenant_configs.get(tenant)
        if config is None:
            config = self._tenant_configs[tenant] = self.policy.safety.for_tenant(tenant)
        return config

    def _session_turns(self, env: Envelope, suspicious: bool) -> int:
        """Distinct suspicious user turns of the session, this one included, when this request's
        newest user turn is itself suspicious (else 0). Only that turn's own windows decide,
        never the history or tool results it carries, and a retry of the same text counts
        once; a request without a user turn never counts."""
        session = env.request.session_scope
        body = env.request.body
        assert body is not None
        users = [m.text() for m in body.messages if m.role == "user" and m.text().strip()]
        if session is None or not suspicious or not users:
            return 0
        turn = hashlib.blake2b(users[-1].encode(), digest_size=8).digest()
        seen = self.sessions.get(session) or ()
        if turn not in seen:
            seen = (*seen, turn)[-SESSION_TURNS_KEPT:]
            self.sessions.put(session, seen)
        return len(seen)


def _key(window: Window) -> bytes:
    return hashlib.blake2b(np.asarray(window.ids, np.int32).tobytes(), digest_size=16).digest()
