import numpy as np
import pytest

from pipeline.envelope import CacheScope
from pipeline.router.cache_entries import exact_key, params_fingerprint
from pipeline.router.semantic_cache import CachedAnswer, SemanticCache

DIM = 384
SCOPE = CacheScope(tenant="acme", decision="code", params=params_fingerprint({"temperature": 0.0}))


def unit(seed: int, dtype=np.float32) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(dtype)


def near(v: np.ndarray, cos: float, seed: int = 99) -> np.ndarray:
    """A unit vector whose cosine similarity with unit vector `v` is exactly `cos`."""
    r = np.random.default_rng(seed).standard_normal(DIM)
    r -= (r @ v) * v
    r /= np.linalg.norm(r)
    return (cos * v + np.sqrt(1 - cos**2) * r).astype(np.float32)


def answer(text: str, model: str = "m1", ttl: float = 100.0) -> CachedAnswer:
    return CachedAnswer(exact_key(text), model, {"content": text}, 0.0, ttl)


def put(cache: SemanticCache, text: str, seed: int | None, scope=SCOPE, **kw) -> CachedAnswer:
    a = answer(text, **kw)
    cache.store(scope, a.key, None if seed is None else unit(seed), a)
    return a


def test_keys_normalise_and_fingerprint_drops_none():
    assert exact_key("  hello \n\t world ") == exact_key("hello world")
    assert exact_key("Hello world") != exact_key("hello world")
    assert len(exact_key("x")) == 64
    fp = params_fingerprint({"temperature": 0.2, "max_tokens": 10})
    assert fp == params_fingerprint({"max_tokens": 10, "temperature": 0.2, "top_p": None})
    assert fp != params_fingerprint({"temperature": 0.3, "max_tokens": 10})
    assert len(fp) == 16


def test_exact_hit():
    cache = SemanticCache()
    a = put(cache, "what is kafka", seed=1)
    hit = cache.lookup(SCOPE, exact_key(" what  is kafka "), unit(50), 0.99, now=1.0)
    assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0
    assert hit.answer == a


def test_semantic_hit_above_threshold_and_miss_below():
    cache = SemanticCache()
    a = put(cache, "what is kafka", seed=1)
    put(cache, "unrelated", seed=2)
    hit = cache.lookup(SCOPE, exact_key("explain kafka"), near(unit(1), 0.95), 0.9, now=1.0)
    assert hit is not None and hit.kind == "semantic"
    assert hit.answer == a and hit.similarity == pytest.approx(0.95, abs=1e-3)
    assert cache.lookup(SCOPE, exact_key("other"), near(unit(1), 0.85), 0.9, now=1.0) is None


def test_float16_embeddings_are_accepted():
    cache = SemanticCache()
    a = answer("q")
    cache.store(SCOPE, a.key, unit(1, np.float16), a)
    hit = cache.lookup(SCOPE, "other-key", unit(1, np.float16), 0.99, now=1.0)
    assert hit is not None and hit.answer == a


def test_scopes_are_isolated():
    cache = SemanticCache()
    a = put(cache, "what is kafka", seed=1)
    other_tenant = SCOPE.model_copy(update={"tenant": "globex"})
    other_params = SCOPE.model_copy(update={"params": params_fingerprint({"temperature": 1})})
    for scope in (other_tenant, other_params):
        assert cache.lookup(scope, a.key, unit(1), 0.5, now=1.0) is None
    assert cache.lookup(SCOPE, a.key, unit(1), 0.5, now=1.0) is not None


def test_expired_entries_miss_and_are_dropped():
    cache = SemanticCache()
    a = put(cache, "exact", seed=1, ttl=10.0)
    put(cache, "semantic", seed=2, ttl=10.0)
    put(cache, "fresh", seed=3, ttl=1000.0)
    assert cache.lookup(SCOPE, a.key, None, 0.9, now=10.0) is None
    assert len(cache) == 2
    assert cache.lookup(SCOPE, "nope", unit(2), 0.9, now=11.0) is None
    assert len(cache) == 1
    assert cache.lookup(SCOPE, "nope", unit(3), 0.9, now=11.0).answer.model == "m1"


def test_purge_expired():
    cache = SemanticCache()
    for i in range(5):
        put(cache, f"q{i}", seed=i, ttl=10.0 if i % 2 else 50.0)
    assert cache.purge_expired(now=20.0) == 2
    assert len(cache) == 3
    assert cache.lookup(SCOPE, "nope", unit(1), 0.99, now=20.0) is None
    assert cache.lookup(SCOPE, "nope", unit(4), 0.99, now=20.0) is not None


def test_lru_eviction_keeps_recently_used():
    cache = SemanticCache(max_entries=3)
    first = put(cache, "q0", seed=0)
    put(cache, "q1", seed=1)
    put(cache, "q2", seed=2, scope=SCOPE.model_copy(update={"tenant": "other"}))
    assert cache.lookup(SCOPE, first.key, None, 0.9, now=1.0) is not None  # q0 now most recent
    put(cache, "q3", seed=3)
    assert len(cache) == 3
    assert cache.lookup(SCOPE, exact_key("q1"), unit(1), 0.99, now=1.0) is None
    assert cache.lookup(SCOPE, first.key, None, 0.9, now=1.0) is not None
    for i in range(4, 40):
        put(cache, f"q{i}", seed=i)
    assert len(cache) == 3
    for i in range(37, 40):
        assert cache.lookup(SCOPE, "nope", unit(i), 0.99, now=1.0) is not None


def test_replacing_an_entry():
    cache = SemanticCache()
    put(cache, "q", seed=1, model="old")
    new = answer("q", model="new")
    cache.store(SCOPE, new.key, unit(2), new)
    assert len(cache) == 1
    assert cache.lookup(SCOPE, new.key, None, 0.9, now=1.0).answer.model == "new"
    assert cache.lookup(SCOPE, "nope", unit(1), 0.9, now=1.0) is None
    assert cache.lookup(SCOPE, "nope", unit(2), 0.9, now=1.0).answer.model == "new"


def test_remove_and_many_rows_stay_consistent():
    cache = SemanticCache()
    for i in range(100):
        put(cache, f"q{i}", seed=i)
    for i in range(0, 100, 3):
        cache.remove(SCOPE, exact_key(f"q{i}"))
    assert len(cache) == 66
    for i in range(100):
        hit = cache.lookup(SCOPE, "nope", unit(i), 0.99, now=1.0)
        assert (hit is None) == (i % 3 == 0)
        assert hit is None or hit.answer.key == exact_key(f"q{i}")


def test_exact_only_entries_never_match_semantically():
    cache = SemanticCache()
    a = put(cache, "q", seed=None)
    assert cache.lookup(SCOPE, "other", unit(1), -1.0, now=1.0) is None
    assert cache.lookup(SCOPE, a.key, unit(1), 0.9, now=1.0).kind == "exact"


def test_dimension_mismatch_is_rejected():
    cache = SemanticCache()
    put(cache, "q", seed=1)
    with pytest.raises(ValueError):
        cache.store(SCOPE, "k", np.ones(8, dtype=np.float32), answer("k"))
    assert len(cache) == 1


def test_counters():
    cache = SemanticCache()
    a = put(cache, "q", seed=1)
    cache.lookup(SCOPE, a.key, None, 0.9, now=1.0)
    cache.lookup(SCOPE, "other", unit(1), 0.9, now=1.0)
    cache.lookup(SCOPE, "other", unit(2), 0.9, now=1.0)
    cache.lookup(SCOPE, "other", None, 0.9, now=1.0)
    assert (cache.hits_exact, cache.hits_semantic, cache.misses) == (1, 1, 2)
