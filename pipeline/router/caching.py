"""How requests meet the semantic cache: scope, keys and entries on ``wrp.cache``.

A request's scope is its tenant, its decision and a fingerprint of everything in the body that
shapes the answer besides the last user turn: earlier messages, tools, sampling parameters and
any extra fields (``model`` and ``stream`` excepted). Inside a scope the last user turn (the
routing text) is matched exactly, then by embedding similarity. Requests with tools or in a
tool loop are never cached. Dispatch publishes a successful answer as a :class:`CacheEntry`
(compacted ``wrp.cache``); every router instance tails the topic into its
:class:`~pipeline.router.cache.SemanticCache`, so instances share entries and a restarted
router has them again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.envelope import CacheEntry, Envelope, Signals
from pipeline.policy import CacheConfig, DecisionSpec, Policy
from pipeline.router.cache import (
    CachedAnswer,
    CacheScope,
    SemanticCache,
    exact_key,
    params_fingerprint,
)
from pipeline.workload.structural import routing_text


def cache_config(policy: Policy, spec: DecisionSpec) -> CacheConfig | None:
    """The decision's cache settings if caching is on for it."""
    config = spec.cache or policy.router.cache
    return config if config.enabled else None


def cacheable(envelope: Envelope) -> bool:
    signals = envelope.signals
    return signals is not None and not (signals.tools_present or signals.tool_loop)


def scope_of(envelope: Envelope, decision: str) -> CacheScope:
    body = envelope.request.body
    assert body is not None
    shape: dict[str, Any] = body.model_dump(exclude={"model", "stream", "messages"})
    shape["context"] = [m.model_dump() for m in body.messages[:-1]]
    shape["last_role"] = body.messages[-1].role
    return CacheScope(envelope.request.tenant, decision, params_fingerprint(shape))


def key_of(envelope: Envelope) -> str:
    assert envelope.request.body is not None
    return exact_key(routing_text(envelope.request.body))


def _embedding(signals: Signals | None) -> np.ndarray | None:
    return signals.embedding_vector() if signals is not None and signals.embedding else None


def lookup(
    cache: SemanticCache, envelope: Envelope, decision: str, config: CacheConfig, now: float
) -> CachedAnswer | None:
    hit = cache.lookup(
        scope_of(envelope, decision),
        key_of(envelope),
        _embedding(envelope.signals),
        config.similarity,
        now,
    )
    return hit.answer if hit else None


def entry_for(
    envelope: Envelope, decision: str, model: str, response: dict, ttl_s: float, now: float
) -> CacheEntry:
    scope = scope_of(envelope, decision)
    signals = envelope.signals
    return CacheEntry(
        tenant=scope.tenant,
        decision=scope.decision,
        params=scope.params,
        key=key_of(envelope),
        embedding=signals.embedding if signals is not None and signals.embedding else None,
        model=model,
        response=response,
        stored_at=now,
        expires_at=now + ttl_s,
    )


def store(cache: SemanticCache, entry: CacheEntry) -> None:
    """Put an entry from ``wrp.cache`` into a router's index."""
    vector = Signals.decode_embedding(entry.embedding) if entry.embedding else None
    cache.store(
        CacheScope(entry.tenant, entry.decision, entry.params),
        entry.key,
        vector,
        CachedAnswer(entry.key, entry.model, entry.response, entry.stored_at, entry.expires_at),
    )


def topic_key(entry: CacheEntry) -> str:
    return f"{entry.tenant}/{entry.decision}/{entry.params}/{entry.key}"
