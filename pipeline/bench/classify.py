"""`wrp bench classify`: signals + safety logic in one process against a bare onnxruntime loop.

Both sides see the same N real prompts (a fixed mix of the shared data's sources), the same
model file, the same thread count and the same token budget. The bare loop is what any
embedding service does at minimum: tokenize one text, truncate, run the model, mean-pool. Ours
is everything the signals and safety stages compute (structure, language, rules, the encoder
pass, four heads, PII, the verdict), in batches of ``batch_max`` requests.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.evaluation import datasets
from pipeline.models.encoder import Encoder, load_encoder
from pipeline.policy import load_policy
from pipeline.safety.screener import Screener
from pipeline.settings import Settings, data_dir
from pipeline.workload.extractor import SignalExtractor

WARMUP = 32


def bench_texts(n: int) -> tuple[list[str], dict[str, int]]:
    """``n`` prompts taken round-robin from every attack and benign source (deterministic)."""
    root = data_dir()
    pools = {**datasets.benign_sources(root), **datasets.attack_sources(root)}
    queues = {name: sorted(rows, key=lambda r: r.digest()) for name, rows in pools.items()}
    texts: list[str] = []
    counts = dict.fromkeys(queues, 0)
    while len(texts) < n and any(queues.values()):
        for name, queue in queues.items():
            if queue and len(texts) < n:
                texts.append(queue.pop().text)
                counts[name] += 1
    return texts, counts


def bare_loop(encoder: Encoder, texts: list[str]) -> float:
    """Seconds for tokenize -> truncate -> ONNX -> mean pool, one text at a time."""
    started = time.perf_counter()
    for text in texts:
        ids = np.array(encoder.token_ids([text]))
        encoder.embed(ids, np.ones_like(ids))
    return time.perf_counter() - started


def pipeline_loop(
    extractor: SignalExtractor, screener: Screener, requests: list[RequestSection], batch: int
) -> tuple[float, list[float]]:
    """Seconds in all, and each request's latency (the time of the batch it rode in)."""
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(0, len(requests), batch):
        chunk = requests[i : i + batch]
        t0 = time.perf_counter()
        signals = extractor.extract(chunk)
        envelopes = [Envelope(request=r, signals=s) for r, s in zip(chunk, signals, strict=True)]
        screener.screen(envelopes)
        latencies += [time.perf_counter() - t0] * len(chunk)
    return time.perf_counter() - started, latencies


def run_classify_bench(settings: Settings, n: int, threads: int) -> dict:
    texts, counts = bench_texts(n)
    requests = [
        RequestSection(body=ChatRequest(messages=[{"role": "user", "content": t}])) for t in texts
    ]
    encoder = load_encoder(
        settings.model_dir, threads, settings.encoder_max_tokens, settings.encoder_batch
    )
    policy = load_policy(settings.policy)
    extractor = SignalExtractor(policy, encoder)
    screener = Screener(policy, encoder)
    tokens = [len(ids) for ids in encoder.token_ids(texts)]
    print(f"bench classify: {len(texts)} prompts, warming up", file=sys.stderr)
    bare_loop(encoder, texts[:WARMUP])
    pipeline_loop(extractor, screener, requests[:WARMUP], settings.batch_max)
    print("bench classify: bare onnxruntime loop", file=sys.stderr)
    bare = bare_loop(encoder, texts)
    print("bench classify: signals + safety", file=sys.stderr)
    ours, latencies = pipeline_loop(extractor, screener, requests, settings.batch_max)
    ms = np.array(latencies) * 1000
    return {
        "setup": {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "encoder": encoder.name,
            "threads": threads,
            "max_tokens": encoder.max_tokens,
            "batch": settings.batch_max,
            "encoder_batch": encoder.batch_size,
            "prompts": len(texts),
            "sources": counts,
            "tokens_p50_p90": [int(np.percentile(tokens, 50)), int(np.percentile(tokens, 90))],
        },
        "bare_onnxruntime_texts_per_s": round(len(texts) / bare, 1),
        "signals_safety_requests_per_s": round(len(texts) / ours, 1),
        "ratio": round(bare / ours, 3),
        "request_latency_ms": {
            "p50": round(float(np.percentile(ms, 50)), 1),
            "p99": round(float(np.percentile(ms, 99)), 1),
        },
    }
