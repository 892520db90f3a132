"""In-memory semantic response cache index for the router stage.

Entries live under a :class:`~pipeline.envelope.CacheScope` (tenant, routing decision,
generation-parameter fingerprint); scopes never see each other's entries. Each entry has an
exact key (see :mod:`pipeline.router.cache_entries`) and optionally an L2-normalised embedding.

A lookup tries the exact key first, then the most similar embedding in the same scope
(cosine similarity as a dot product) at or above a threshold. Each scope keeps a dense
float32 matrix of its embeddings: rows are removed by moving the last row into the hole,
so a lookup is one matrix-vector product over live rows, and the matrix shrinks when it
is mostly empty. One LRU order over all scopes bounds the cache to `max_entries`.
Expired entries are never returned and are dropped when a lookup meets them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.envelope import CacheScope

_MIN_ROWS = 16


@dataclass(frozen=True)
class CachedAnswer:
    key: str
    model: str
    response: dict
    stored_at: float
    expires_at: float


@dataclass(frozen=True)
class CacheHit:
    answer: CachedAnswer
    kind: Literal["exact", "semantic"]
    similarity: float


class _ScopeIndex:
    """Dense embedding matrix of one scope: rows [0, n) are live, `keys[i]` owns row i."""

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((_MIN_ROWS, dim), dtype=np.float32)
        self.expires = np.empty(_MIN_ROWS, dtype=np.float64)
        self.keys: list[str] = []
        self.rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def add(self, key: str, embedding: np.ndarray, expires_at: float) -> None:
        n = len(self.keys)
        if n == len(self.matrix):
            self._resize(2 * n)
        self.matrix[n] = embedding
        self.expires[n] = expires_at
        self.keys.append(key)
        self.rows[key] = n

    def discard(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = len(self.keys) - 1
        moved = self.keys.pop()
        if row != last:
            self.matrix[row] = self.matrix[last]
            self.expires[row] = self.expires[last]
            self.keys[row] = moved
            self.rows[moved] = row
        if len(self.matrix) > _MIN_ROWS and last <= len(self.matrix) // 4:
            self._resize(len(self.matrix) // 2)

    def expired(self, now: float) -> list[str]:
        return [self.keys[i] for i in np.flatnonzero(self.expires[: len(self.keys)] <= now)]

    def best(self, query: np.ndarray) -> tuple[str, float]:
        sims = self.matrix[: len(self.keys)] @ query
        row = int(np.argmax(sims))
        return self.keys[row], float(sims[row])

    def _resize(self, rows: int) -> None:
        n = len(self.keys)
        matrix = np.empty((rows, self.dim), dtype=np.float32)
        matrix[:n] = self.matrix[:n]
        expires = np.empty(rows, dtype=np.float64)
        expires[:n] = self.expires[:n]
        self.matrix, self.expires = matrix, expires


class SemanticCache:
    """Bounded LRU cache of answers, looked up by exact key or embedding similarity."""

    def __init__(self, max_entries: int = 50_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[CacheScope, str], CachedAnswer] = OrderedDict()
        self._indexes: dict[CacheScope, _ScopeIndex] = {}
        self.hits_exact = 0
        self.hits_semantic = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def store(
        self, scope: CacheScope, key: str, embedding: np.ndarray | None, answer: CachedAnswer
    ) -> None:
        """Insert or replace (scope, key); `embedding` None makes an exact-only entry."""
        vector = None if embedding is None else np.asarray(embedding, dtype=np.float32).ravel()
        index = self._indexes.get(scope)
        if vector is not None and index is not None and vector.shape[0] != index.dim:
            raise ValueError(f"embedding dim {vector.shape[0]} != scope dim {index.dim}")
        self.remove(scope, key)
        while len(self._entries) >= self.max_entries:
            (old_scope, old_key), _ = self._entries.popitem(last=False)
            self._discard_row(old_scope, old_key)
        self._entries[(scope, key)] = answer
        if vector is not None:
            index = self._indexes.get(scope)  # eviction may have dropped an emptied index
            if index is None:
                index = self._indexes[scope] = _ScopeIndex(vector.shape[0])
            index.add(key, vector, answer.expires_at)

    def lookup(
        self,
        scope: CacheScope,
        key: str,
        embedding: np.ndarray | None,
        threshold: float,
        now: float,
    ) -> CacheHit | None:
        """Exact hit on (scope, key), else the most similar live entry of the scope."""
        answer = self._entries.get((scope, key))
        if answer is not None:
            if answer.expires_at > now:
                self._entries.move_to_end((scope, key))
                self.hits_exact += 1
                return CacheHit(answer, "exact", 1.0)
            self.remove(scope, key)
        index = self._indexes.get(scope)
        if embedding is not None and index is not None:
            for stale in index.expired(now):
                self.remove(scope, stale)
            if len(index):
                query = np.asarray(embedding, dtype=np.float32).ravel()
                best_key, similarity = index.best(query)
                if similarity >= threshold:
                    self._entries.move_to_end((scope, best_key))
                    self.hits_semantic += 1
                    return CacheHit(self._entries[(scope, best_key)], "semantic", similarity)
        self.misses += 1
        return None

    def remove(self, scope: CacheScope, key: str) -> None:
        if self._entries.pop((scope, key), None) is not None:
            self._discard_row(scope, key)

    def purge_expired(self, now: float) -> int:
        """Drop every expired entry; returns how many were dropped."""
        stale = [sk for sk, answer in self._entries.items() if answer.expires_at <= now]
        for scope, key in stale:
            self.remove(scope, key)
        return len(stale)

    def _discard_row(self, scope: CacheScope, key: str) -> None:
        index = self._indexes.get(scope)
        if index is None:
            return
        index.discard(key)
        if not len(index):
            del self._indexes[scope]
