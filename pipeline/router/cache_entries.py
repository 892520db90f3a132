"""How requests meet the semantic cache: scope, keys and entries on ``wrp.cache``.

A request's scope is its tenant, its decision and a fingerprint of everything in the body that
shapes the answer besides the last user turn: earlier messages, tools, sampling parameters and
any extra fields (``model`` and ``stream`` excepted). Inside a scope the last user turn (the
routing text) is matched exactly, then by embedding similarity. Requests with tools or in a
tool loop are never cached. The router computes a request's scope and key once, looks the
answer up under them and carries them on the :class:`~pipeline.envelope.Decision`; dispatch
publishes a successful answer under them as a :class:`CacheEntry` (compacted ``wrp.cache``);
every router instance tails the topic into its
:class:`~pipeline.router.semantic_cache.SemanticCache`, so instances share entries and a restarted
router has them again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from pipeline.envelope import CacheEntry, CacheScope, Envelope, Signals
from pipeline.policy import CacheConfig, DecisionSpec, Policy
from pipeline.router.semantic_cache import CachedAnswer, SemanticCache
from pipeline.workload.structural import routing_text


def params_fingerprint(body_params: dict[str, Any]) -> str:
    """Short sha256 of the answer-shaping request fields; None values are dropped."""
    kept = {k: v for k, v in body_params.items() if v is not None}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def exact_key(text: str) -> str:
    """sha256 of the routing text, stripped and with whitespace runs collapsed to one space."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


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
    return CacheScope(
        tenant=envelope.request.tenant, decision=decision, params=params_fingerprint(shape)
    )


def key_of(envelope: Envelope) -> str:
    assert envelope.request.body is not None
    return exact_key(routing_text(envelope.request.body))


def _embedding(signals: Signals | None) -> np.ndarray | None:
    return signals.embedding_vector() if signals is not None and signals.embedding else None


def lookup(
    cache: SemanticCache,
    envelope: Envelope,
    scope: CacheScope,
    key: str,
    config: CacheConfig,
    now: float,
) -> CachedAnswer | None:
    """The answer ``scope`` holds for the request: under ``key``, else a similar one."""
    hit = cache.lookup(scope, key, _embedding(envelope.signals), config.similarity, now)
    return hit.answer if hit else None


def entry_for(envelope: Envelope, model: str, response: dict, now: float) -> CacheEntry | None:
    """``model``'s answer to a routed request, stored under its decision's cache scope and key
    for the decision's TTL; None when the decision names no scope and key (a router older than
    them) or a scope of another tenant than the request's."""
    decision, signals = envelope.decision, envelope.signals
    if decision is None or decision.cache_ttl_s is None:
        return None
    scope, key = decision.cache_scope, decision.cache_key
    if scope is None or key is None or scope.tenant != envelope.request.tenant:
        return None
    return CacheEntry(
        tenant=scope.tenant,
        decision=scope.decision,
        params=scope.params,
        key=key,
        embedding=signals.embedding if signals is not None and signals.embedding else None,
        model=model,
        response=response,
        stored_at=now,
        expires_at=now + decision.cache_ttl_s,
    )


def store(cache: SemanticCache, entry: CacheEntry) -> None:
    """Put an entry from ``wrp.cache`` into a router's index."""
    vector = Signals.decode_embedding(entry.embedding) if entry.embedding else None
    cache.store(
        CacheScope(tenant=entry.tenant, decision=entry.decision, params=entry.params),
        entry.key,
        vector,
        CachedAnswer(entry.key, entry.model, entry.response, entry.stored_at, entry.expires_at),
    )


def topic_key(entry: CacheEntry) -> str:
    return f"{entry.tenant}/{entry.decision}/{entry.params}/{entry.key}"
