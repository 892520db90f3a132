"""Per-stage ``/healthz`` and Prometheus ``/metrics`` (plus any stage routes); served with
:func:`pipeline.http_server.serve_http`."""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class StageMetrics:
    """The metrics every stage exports; one registry per process."""

    def __init__(self, stage: str) -> None:
        self.registry = CollectorRegistry()
        self.processed = Counter(
            "wrp_stage_processed", "messages processed", registry=self.registry
        )
        self.failed = Counter(
            "wrp_stage_batch_failures",
            "batches that failed and were retried",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "wrp_stage_dead_lettered",
            "messages sent to wrp.dlq",
            ["reason"],
            registry=self.registry,
        )
        self.offset_gaps = Counter(
            "wrp_stage_offset_gaps",
            "fetches that skipped offsets of a delete-policy topic (refetched, else reported)",
            ["topic"],
            registry=self.registry,
        )
        self.paused = Gauge(
            "wrp_stage_paused",
            "1 while the stage has paused consumption (backpressure)",
            registry=self.registry,
        )
        self.pauses = Counter(
            "wrp_stage_pauses", "times the stage paused consumption", registry=self.registry
        )
        self.in_flight = Gauge(
            "wrp_stage_in_flight", "records being processed", registry=self.registry
        )
        self.batch_seconds = Histogram(
            "wrp_stage_batch_seconds",
            "time to process, produce and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "wrp_stage_model_seconds",
            "time per batch spent in one part of the stage's work (encoder, heads, ...)",
            ["part"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.lag = Gauge(
            "wrp_stage_consumer_lag",
            "records behind the end of the partition",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.info = Gauge("wrp_stage_info", "stage identity", ["stage"], registry=self.registry)
        self.info.labels(stage=stage).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def health_app(stage: str, metrics: StageMetrics, status: dict[str, object]) -> FastAPI:
    app = FastAPI(title=f"wrp {stage}")

    @app.get("/healthz")
    async def healthz() -> Response:
        ok = status.get("state") == "running"
        body = {"stage": stage, **status}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
