"""``wrp bench envelope`` (``make bench``): how far one machine goes, and what the pipeline costs
next to the bare parts it is built from.

On the embedded stack with simulated pools that answer at once, for learned signals on, off, and
on with signals+safety+router fused into one process (measured at the separate stages' rates,
so the latency it saves is read at the same load):

1. maximum sustainable throughput: ``--saturate`` distinct requests published at once give the
   burst drain rate (full batches: an upper bound); then steady rates from 90% of it down, 12 s
   each, until one keeps p99 overhead under 500 ms: that rate is the maximum sustainable;
2. each batch stage's own throughput over that run: records per second of batch time (its
   ``wrp_stage_processed`` over ``wrp_stage_batch_seconds_sum``); not dispatch, whose records
   overlap (it waits on pools), nor the learner (faust);
3. pipeline overhead (publish -> answer, minus the pool's own time) p50/p99 at 25%, 50% and 75%
   of that maximum, open loop, ``--duration`` seconds each;
4. the signals stage alone with 1, 2 and 3 instances in its group (records/s to wrp.signals).

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
from aiokafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from pipeline.bench import distinct_messages, measure, percentiles
from pipeline.bus.admin import create_new_topics
from pipeline.bus.broker import start_broker
from pipeline.bus.catalog import REQUESTS, SIGNALS
from pipeline.bus.clients import new_consumer, new_producer
from pipeline.bus.codec import encode
from pipeline.client import replay
from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.models.encoder import load_encoder
from pipeline.settings import Settings
from pipeline.stack import STAGES, Stack

FUSED = "signals+safety+router"
#: Topic hops from publish to answer: requests, signals, screened, routed, responses.
HOPS = 5
#: A rate is sustained when, offered steadily for SEARCH_S seconds, p99 overhead stays under this
#: (a queue that grows pushes p99 up with every second). Tried from the burst's drain rate down.
SUSTAINED_P99_MS = 500
SEARCH = (0.9, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2)
SEARCH_S = 12
LOADS = (0.25, 0.5, 0.75)


def prompts(count: int, tag: str) -> list[RequestSection]:
    """Distinct prompts (the semantic cache must not answer them)."""
    return [
        RequestSection(body=ChatRequest(messages=distinct_messages(tag, i))) for i in range(count)
    ]


async def bare_hop(bootstrap: str, count: int = 300) -> dict[str, float]:
    """Produce one message, wait until a group consumer receives it, repeat."""
    topic = f"wrp.bench-hop-{uuid.uuid4().hex[:8]}"
    await create_new_topics(bootstrap, [NewTopic(topic, 1, 1)])
    producer = new_producer(bootstrap, linger_ms=1)
    consumer = new_consumer(
        bootstrap, topic, group_id=topic, auto_offset_reset="earliest", fetch_max_wait_ms=5
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


def open_loop(bootstrap: str, rate: float, duration: float, tag: str) -> dict:
    """Overhead percentiles of ``duration`` seconds of requests offered at ``rate``."""
    received: dict[str, float] = {}
    count = max(20, int(rate * duration))
    answers = asyncio.run(
        replay(bootstrap, prompts(count, tag), rate, 300, tag, received_at=received)
    )
    result = measure(answers, received)["publish_to_response_minus_pool_ms"]
    hits = sum(1 for env in answers.values() if env.decision and env.decision.cache_hit)
    return {"rate": round(rate, 1), **result, "cache_hits": hits}


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
        burst = len(answers) / (max(received.values()) - started)
        after = stage_counters(stack, measured)
        per_stage = {
            stage: round(
                (after[stage][0] - before[stage][0])
                / max(after[stage][1] - before[stage][1], 1e-9),
                1,
            )
            for stage in measured
        }
        print(f"[{label}] burst drained at {burst:.1f} req/s; per stage {per_stage}", flush=True)
        sustained = None
        for share in SEARCH:
            tried = open_loop(settings.broker, burst * share, SEARCH_S, f"{label} search {share}")
            if tried["p99"] < SUSTAINED_P99_MS:
                sustained = burst * share
                break
        sustained = sustained or burst * SEARCH[-1]
        print(f"[{label}] max sustainable {sustained:.1f} req/s", flush=True)
        loads = {}
        targets = rates or [sustained * share for share in LOADS]
        for share, rate in zip(LOADS, targets, strict=True):
            loads[f"{int(share * 100)}%"] = open_loop(
                settings.broker, rate, duration, f"{label} {share}"
            )
            print(f"[{label}] {share:.0%}: {loads[f'{int(share * 100)}%']}", flush=True)
        return {
            "burst_req_per_s": round(burst, 1),
            "max_req_per_s": round(sustained, 1),
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
    report["signals_instances_records_per_s"] = signals_scaling(on, saturate // 2)
    report["bare"] = {"aiokafka_hop_ms": hop, "onnx_encoder_texts_per_s": round(encoder_rate)}
    report["ratios"] = ratios(report)
    return report


async def _signals_rate(bootstrap: str, count: int, tag: str) -> float:
    """Publish ``count`` requests at once; records per second arriving on ``wrp.signals``."""
    consumer = new_consumer(bootstrap, SIGNALS, auto_offset_reset="latest")
    await consumer.start()
    await consumer.getmany(timeout_ms=500)  # positions at the end before publishing
    producer = new_producer(bootstrap, linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        sends = [
            await producer.send(REQUESTS, encode(Envelope(request=r)), key=r.key.encode())
            for r in prompts(count, tag)
        ]
        await asyncio.gather(*sends)
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(part) for part in batch.values())
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


def signals_scaling(settings: Settings, count: int) -> dict[int, float]:
    """The signals stage alone (no other stage running) with 1, 2 and 3 instances in its group:
    records per second from wrp.requests to wrp.signals."""
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench-scaling"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    rates: dict[int, float] = {}
    try:
        stack.start(stages=("signals",), simulators=False, gateway=False)
        ports = [settings.stage_port("signals")]
        for instances in (1, 2, 3):
            if instances > 1:
                port = settings.metrics_port_base + 10 + instances
                stack.spawn(f"signals-{instances}", ["stage", "signals", "--port", str(port)])
                ports.append(port)
            _wait_rebalanced(ports)
            asyncio.run(_signals_rate(settings.broker, 40, f"warm {instances}"))
            rate = asyncio.run(_signals_rate(settings.broker, count, f"s{instances}"))
            rates[instances] = round(rate, 1)
            print(f"signals x{instances}: {rates[instances]} records/s", flush=True)
    finally:
        stack.stop()
    return rates


def _wait_rebalanced(ports: list[int], timeout_s: float = 180) -> None:
    """Until every instance is running and the 4 partitions are spread over all of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = []
        for port in ports:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
                owned.append(health.get("partitions", 0))
            except (httpx.HTTPError, ValueError):
                owned.append(0)
        if all(owned) and sum(owned) == 4:
            return
        time.sleep(0.5)
    raise RuntimeError(f"signals instances on {ports} did not share the partitions")


def ratios(report: dict) -> dict:
    hop = report["bare"]["aiokafka_hop_ms"]["p50"]
    out = {}
    for label in ("learned_on", "learned_off", "fused"):
        at_half = report[label]["overhead_ms"]["50%"]
        out[label] = {
            "overhead_p50_over_one_hop": round(at_half["p50"] / hop, 1),
            "overhead_p50_over_all_hops": round(at_half["p50"] / (HOPS * hop), 2),
        }
        if label != "learned_off":  # no encoder runs there
            encoder = report["bare"]["onnx_encoder_texts_per_s"]
            stages = report[label]["stage_records_per_s"]
            first = stages.get("signals", stages.get(FUSED, 0.0))
            peak = report[label]["max_req_per_s"]
            out[label]["max_rate_over_bare_encoder"] = round(peak / encoder, 3)
            out[label]["encoder_stage_rate_over_bare_encoder"] = round(first / encoder, 3)
    on, fused = report["learned_on"]["overhead_ms"]["50%"], report["fused"]["overhead_ms"]["50%"]
    out["fused_saves_p50_ms_at_50%"] = round(on["p50"] - fused["p50"], 1)
    out["fused_saves_p99_ms_at_50%"] = round(on["p99"] - fused["p99"], 1)
    return out
