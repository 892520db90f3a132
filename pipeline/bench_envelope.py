"""``wrp bench envelope`` (``make bench``): how far one machine goes, and what the pipeline costs
next to the bare parts it is built from.

On the embedded stack with simulated pools that answer at once, for learned signals on, off, and
on with signals+safety+router fused into one process (measured at the separate stages' rates,
so the latency it saves is read at the same load):

1. maximum sustainable throughput: ``--saturate`` distinct requests published at once, answers
   per second from the first publish to the last answer;
2. each batch stage's own throughput over that run: records per second of batch time (its
   ``wrp_stage_processed`` over ``wrp_stage_batch_seconds_sum``); not dispatch, whose records
   overlap (it waits on pools), nor the learner (faust);
3. pipeline overhead (publish -> answer, minus the pool's own time) p50/p99 at 25%, 50% and 75%
   of that maximum, open loop, ``--duration`` seconds each.

In the same run, the bare costs it competes with: one aiokafka produce -> consume hop on the same
broker (latency of one message at a time; acks=all, like the stages), and a bare onnxruntime
loop of the encoder over the same prompts (texts/s at the stages' batch size, one thread).
Overheads are then stated as ratios of these.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import time
import uuid

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from pipeline.bench import PROMPTS, measure, percentiles
from pipeline.bus.broker import start_broker
from pipeline.client import replay
from pipeline.envelope import ChatRequest, RequestSection
from pipeline.models.encoder import load_encoder
from pipeline.settings import Settings
from pipeline.stack import STAGES, Stack

FUSED = "signals+safety+router"
#: Topic hops from publish to answer: requests, signals, screened, routed, responses.
HOPS = 5


def prompts(count: int, tag: str) -> list[RequestSection]:
    """Distinct prompts (the semantic cache must not answer them)."""
    return [
        RequestSection(
            body=ChatRequest(
                messages=[{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} [{tag} {i}]"}]
            )
        )
        for i in range(count)
    ]


async def bare_hop(bootstrap: str, count: int = 300) -> dict[str, float]:
    """Produce one message, wait until a group consumer receives it, repeat."""
    topic = f"wrp.bench-hop-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=topic,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(topic, b"warm-up")
        await consumer.getone()
        latencies = []
        for i in range(count):
            sent = time.perf_counter()
            await producer.send_and_wait(topic, f"{i}".encode() * 100)
            await consumer.getone()
            latencies.append((time.perf_counter() - sent) * 1000)
    finally:
        await consumer.stop()
        await producer.stop()
    return percentiles(latencies)


def bare_encoder(settings: Settings, texts: list[str]) -> float:
    """Texts per second through tokenizer + ONNX + pooling, in the stages' batches."""
    encoder = load_encoder(
        settings.model_dir, settings.encoder_threads, settings.encoder_max_tokens
    )
    encoder.encode(texts[:32])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), settings.encoder_batch):
        encoder.encode(texts[i : i + settings.encoder_batch])
    return len(texts) / (time.perf_counter() - started)


def stage_counters(stack: Stack, stages: list[str]) -> dict[str, tuple[float, float]]:
    """(records processed, seconds spent in batches) of each stage so far."""
    counters = {}
    for stage in stages:
        text = httpx.get(f"http://127.0.0.1:{stack.settings.stage_port(stage)}/metrics").text
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        counters[stage] = (
            samples.get("wrp_stage_processed_total", 0.0),
            samples.get("wrp_stage_batch_seconds_sum", 0.0),
        )
    return counters


def run_config(
    settings: Settings,
    label: str,
    stages: tuple[str, ...],
    saturate: int,
    duration: float,
    rates: list[float] | None = None,
) -> dict:
    """Saturation, then overhead at 25/50/75% of this configuration's maximum (or at
    ``rates``, to compare configurations at the same offered load)."""
    settings = settings.model_copy(update={"state_dir": settings.state_dir / f"bench-{label}"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack = Stack(
        settings, broker_port=int(settings.broker.rsplit(":", 1)[1]), simulate_latency=False
    )
    # the learner runs faust (no batch metrics); dispatch handles records concurrently, so its
    # busy time overlaps and says nothing of its own rate
    measured = [s for s in stages if s not in ("learner", "dispatch")]
    try:
        stack.start(stages=stages, gateway=False)
        asyncio.run(replay(settings.broker, prompts(40, f"{label} warm"), 0, 120, "warm-up"))
        before = stage_counters(stack, measured)
        received: dict[str, float] = {}
        started = time.time()
        answers = asyncio.run(
            replay(
                settings.broker,
                prompts(saturate, f"{label} sat"),
                0,
                600,
                "saturate",
                received_at=received,
            )
        )
        peak = len(answers) / (max(received.values()) - started)
        after = stage_counters(stack, measured)
        per_stage = {
            stage: round(
                (after[stage][0] - before[stage][0])
                / max(after[stage][1] - before[stage][1], 1e-9),
                1,
            )
            for stage in measured
        }
        print(f"[{label}] max sustainable {peak:.1f} req/s; per stage {per_stage}", flush=True)
        loads = {}
        for share, rate in zip(
            (0.25, 0.5, 0.75), rates or [peak * x for x in (0.25, 0.5, 0.75)], strict=True
        ):
            count = max(20, int(rate * duration))
            received = {}
            answers = asyncio.run(
                replay(
                    settings.broker,
                    prompts(count, f"{label} {share}"),
                    rate,
                    300,
                    f"{int(share * 100)}%",
                    received_at=received,
                )
            )
            result = measure(answers, received)["publish_to_response_minus_pool_ms"]
            hits = sum(1 for env in answers.values() if env.decision and env.decision.cache_hit)
            loads[f"{int(share * 100)}%"] = {"rate": round(rate, 1), **result, "cache_hits": hits}
            print(f"[{label}] {share:.0%} of max ({rate:.1f} req/s): overhead {result}", flush=True)
        return {
            "max_req_per_s": round(peak, 1),
            "stage_records_per_s": per_stage,
            "overhead_ms": loads,
        }
    finally:
        stack.stop()


def run_envelope_bench(settings: Settings, saturate: int, duration: float) -> dict:
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(
        f"setup: {machine}; embedded Tansu, one process per stage, simulated pools answering at "
        f"once; saturation {saturate} distinct requests, then {duration:g} s open loop at "
        "25/50/75% of the maximum",
        flush=True,
    )
    texts = [r.body.messages[0].content for r in prompts(512, "bare")]  # type: ignore[union-attr]
    encoder_rate = bare_encoder(settings, texts)
    print(f"bare onnxruntime encoder loop: {encoder_rate:.0f} texts/s", flush=True)
    on = settings.model_copy(update={"learned_signals": True})
    off = settings.model_copy(update={"learned_signals": False})
    report: dict = {"setup": {"machine": machine, "saturate": saturate, "duration_s": duration}}
    report["learned_on"] = run_config(on, "on", STAGES, saturate, duration)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    port = int(settings.broker.rsplit(":", 1)[1])
    broker = start_broker(port, settings.state_dir / "bench-hop-broker.log")
    try:
        hop = asyncio.run(bare_hop(settings.broker))
    finally:
        broker.terminate()
        broker.wait(10)
    print(f"bare aiokafka produce -> consume hop: {hop}", flush=True)
    report["learned_off"] = run_config(off, "off", STAGES, saturate, duration)
    fused = (FUSED, "dispatch", "learner", "analytics")
    same_load = [v["rate"] for v in report["learned_on"]["overhead_ms"].values()]
    report["fused"] = run_config(on, "fused", fused, saturate, duration, same_load)
    report["bare"] = {"aiokafka_hop_ms": hop, "onnx_encoder_texts_per_s": round(encoder_rate)}
    report["ratios"] = ratios(report)
    return report


def ratios(report: dict) -> dict:
    hop = report["bare"]["aiokafka_hop_ms"]["p50"]
    out = {}
    for label in ("learned_on", "learned_off", "fused"):
        at_half = report[label]["overhead_ms"]["50%"]
        out[label] = {
            "overhead_p50_over_one_hop": round(at_half["p50"] / hop, 1),
            "overhead_p50_over_all_hops": round(at_half["p50"] / (HOPS * hop), 2),
            "max_rate_over_bare_encoder": round(
                report[label]["max_req_per_s"] / report["bare"]["onnx_encoder_texts_per_s"], 3
            ),
        }
    on, fused = report["learned_on"]["overhead_ms"]["50%"], report["fused"]["overhead_ms"]["50%"]
    out["fused_saves_p50_ms_at_50%"] = round(on["p50"] - fused["p50"], 1)
    out["fused_saves_p99_ms_at_50%"] = round(on["p99"] - fused["p99"], 1)
    return out
