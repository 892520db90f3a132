"""Embeddings of training and evaluation texts, cached on disk by encoder and text hash.

Encoding 20k texts takes minutes on two cores; the cache makes re-training and re-evaluating
take seconds. The cache is keyed by encoder name, token budget and the text's sha256, so a
different encoder or truncation never reuses stale vectors.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.models.encoder import Encoder

CHUNK = 256


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]


class EmbeddingCache:
    def __init__(self, encoder: Encoder, cache_dir: Path) -> None:
        self.encoder = encoder
        self.path = cache_dir / f"{encoder.name}-{encoder.max_tokens}.npz"
        self._vectors: dict[bytes, np.ndarray] = {}
        if self.path.exists():
            data = np.load(self.path)
            # numpy's S16 strips trailing NUL bytes: pad them back
            keys = (bytes(k).ljust(16, b"\0") for k in data["keys"])
            self._vectors = dict(zip(keys, data["vectors"], strict=True))

    def embed(self, texts: list[str], label: str = "texts") -> np.ndarray:
        """float32 embeddings of ``texts``, encoding only the ones not cached yet."""
        return self._embed([_key(t) for t in texts], texts, self.encoder.encode, label)

    def embed_ids(self, ids: list[list[int]], label: str = "windows") -> np.ndarray:
        """float32 embeddings of windows of token ids (as :meth:`Encoder.windows` cuts them),
        cached like texts under a key of the ids."""
        keys = [_key("ids:" + " ".join(map(str, window))) for window in ids]
        return self._embed(keys, ids, self.encoder.encode_ids, label)

    def _embed(self, keys: list[bytes], items: list, encode, label: str) -> np.ndarray:
        """The cached vector of each key, encoding (``encode``) the items whose keys are new."""
        missing = sorted(
            {k: item for k, item in zip(keys, items, strict=True) if k not in self._vectors}.items()
        )
        started = time.perf_counter()
        for i in range(0, len(missing), CHUNK):
            chunk = missing[i : i + CHUNK]
            vectors = encode([item for _, item in chunk])
            self._vectors.update(
                (k, v.astype(np.float16)) for (k, _), v in zip(chunk, vectors, strict=True)
            )
            done = min(i + CHUNK, len(missing))
            rate = done / (time.perf_counter() - started)
            print(
                f"\r  encoding {label}: {done}/{len(missing)} ({rate:.0f}/s)",
                end="",
                file=sys.stderr,
            )
        if missing:
            print(file=sys.stderr)
            self.save()
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors), dtype="S16")
        vectors = np.stack(list(self._vectors.values()))
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.path)
