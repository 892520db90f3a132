"""Process settings: every knob has a default for the embedded stack and a WRP_* env var."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = PROJECT_ROOT / "policies" / "default.yaml"
CATALOG_PATH = PROJECT_ROOT / "topics" / "catalog.yaml"
SCHEMAS_DIR = PROJECT_ROOT / "topics" / "schemas"
DEMO_WORKLOAD = PROJECT_ROOT / "workloads" / "demo.jsonl"
#: Env var naming the third-party data directory (default ``../shared/data`` beside the project).
DATA_ENV = "WRP_DATA_DIR"

#: Offset of each stage's /healthz + /metrics port from ``metrics_port_base``.
STAGE_PORT_OFFSETS = {
    "signals": 0,
    "safety": 1,
    "router": 2,
    "dispatch": 3,
    "learner": 4,
    "analytics": 5,
}


class Settings(BaseModel):
    """Settings shared by the CLI and every stage; build with :meth:`from_env`."""

    broker: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (WRP_BROKER)")
    state_dir: Path = Field(
        Path(".wrp"), description="local state: chdb data, logs (WRP_STATE_DIR)"
    )
    clickhouse: str = Field(
        "",
        description="ClickHouse DSN: chdb:///<dir> (embedded) or http(s)://host:port; default "
        "chdb:///<state_dir>/analytics (WRP_CLICKHOUSE)",
    )
    clickhouse_user: str = Field("", description="server user (WRP_CLICKHOUSE_USER)")
    clickhouse_password: str = Field("", description="server password (WRP_CLICKHOUSE_PASSWORD)")
    clickhouse_database: str = Field(
        "", description="server database, created if missing (WRP_CLICKHOUSE_DATABASE)"
    )
    clickhouse_tls_verify: bool = Field(
        True, description="verify the server's TLS certificate (WRP_CLICKHOUSE_TLS_VERIFY)"
    )
    clickhouse_ca_cert: Path | None = Field(
        None, description="CA bundle for the server's certificate (WRP_CLICKHOUSE_CA_CERT)"
    )
    sink_batch_rows: int = Field(
        5000, ge=1, description="analytics: records per ClickHouse insert (WRP_SINK_BATCH_ROWS)"
    )
    sink_flush_ms: int = Field(
        2000,
        ge=1,
        description="analytics: longest wait before a partial insert; an insert costs about the "
        "same for 10 rows as for 500 (WRP_SINK_FLUSH_MS)",
    )
    policy: Path = Field(DEFAULT_POLICY, description="policy file (WRP_POLICY)")
    model_dir: Path | None = Field(
        None, description="directory with model.onnx + tokenizer.json (WRP_MODEL_DIR)"
    )
    http_host: str = Field(
        "127.0.0.1",
        description="address the stages' /healthz + /metrics and the gateway bind; 0.0.0.0 in "
        "containers (WRP_HTTP_HOST)",
    )
    metrics_port_base: int = Field(
        9180, description="first stage health port (WRP_METRICS_PORT_BASE)"
    )
    batch_max: int = Field(64, description="records per consumed batch (WRP_BATCH_MAX)")
    batch_wait_ms: int = Field(
        20,
        description="a busy fetch's wait to fill a batch, and how often a paused stage looks "
        "again (WRP_BATCH_WAIT_MS)",
    )
    fetch_idle_ms: int = Field(
        100,
        ge=5,
        description="how long a stage's fetch may wait while no records come: the embedded "
        "broker holds a fetch to its end even when records arrive, so this bounds the delay of "
        "the first request after a quiet spell, per stage; a real Kafka answers at once, so 500 "
        "costs nothing there (WRP_FETCH_IDLE_MS)",
    )
    fused_intermediate: bool = Field(
        False,
        description="a fused stage still produces what its parts hand each other "
        "(wrp.signals, wrp.screened, wrp.routed), for whoever tails those topics "
        "(WRP_FUSED_INTERMEDIATE)",
    )
    commit_interval_ms: int = Field(
        1000,
        ge=1,
        description="how often a stage commits the offsets of what it finished (and when "
        "partitions move or it stops): a crash replays at most that much (WRP_COMMIT_INTERVAL_MS)",
    )
    batch_linger_ms: int = Field(
        0,
        ge=0,
        description="batch stages keep fetching this long after a batch's first record: larger "
        "batches, fewer broker round trips under load, that much latency (WRP_BATCH_LINGER_MS)",
    )
    learned_signals: bool = Field(
        True,
        description="false: structural signals only, no encoder pass or learned heads; safety "
        "by PII patterns alone (WRP_LEARNED_SIGNALS)",
    )
    encoder_threads: int = Field(1, ge=1, description="ONNX intra-op threads (WRP_ENCODER_THREADS)")
    encoder_max_tokens: int = Field(
        128, ge=8, le=512, description="token budget, head + tail kept (WRP_ENCODER_MAX_TOKENS)"
    )
    encoder_batch: int = Field(32, ge=1, description="texts per ONNX run (WRP_ENCODER_BATCH)")
    max_request_bytes: int = Field(
        1_000_000, description="largest accepted message (WRP_MAX_REQUEST_BYTES)"
    )
    max_hops: int = Field(
        16, ge=4, description="stages a request may pass before it is refused (WRP_MAX_HOPS)"
    )
    reply_topic_prefix: str = Field(
        "wrp.replies.",
        description="besides wrp.responses, a request's reply_to may name an existing topic with "
        "this prefix (WRP_REPLY_TOPIC_PREFIX)",
    )
    gateway_port: int = Field(8080, description="OpenAI-compatible gateway port (WRP_GATEWAY_PORT)")
    gateway_timeout_s: float = Field(
        120.0, gt=0, description="how long the gateway waits for an answer (WRP_GATEWAY_TIMEOUT_S)"
    )
    api_keys: str = Field(
        "", description="tenant:sha256-of-key pairs, comma-separated (WRP_API_KEYS)"
    )
    api_keys_file: Path | None = Field(
        None,
        description="JSON lines of {tenant, sha256} written by `wrp gateway key`; default "
        "<state_dir>/api_keys.jsonl (WRP_API_KEYS_FILE)",
    )
    analytics_token: str = Field(
        "",
        description="bearer token that reads every analytics query; unset: the analytics stage "
        "makes one per run in <state_dir>/run/analytics.token (WRP_ANALYTICS_TOKEN)",
    )
    analytics_url: str = Field(
        "",
        description="the analytics stage's HTTP address, for the CLI and the gateway; default "
        "http://127.0.0.1:<its port> (WRP_ANALYTICS_URL)",
    )
    gateway_open: bool = Field(
        False,
        description="serve the gateway without API keys, every caller tenant `default`; ignored "
        "once any key exists (WRP_GATEWAY_OPEN)",
    )
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP collector base URL (e.g. http://tempo:4318) that each stage and "
        "the gateway send a span per request to; unset: OTEL_EXPORTER_OTLP_ENDPOINT; both "
        "unset: no spans, the traceparent header is only passed along (WRP_OTLP_ENDPOINT)",
    )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read WRP_<FIELD> variables; explicit ``overrides`` (e.g. CLI flags) win."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"WRP_{name.upper()}")
            if env is not None and env != "":
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse or f"chdb:///{(self.state_dir / 'analytics').resolve()}"

    @property
    def api_keys_path(self) -> Path:
        """The API key file: WRP_API_KEYS_FILE, else ``<state_dir>/api_keys.jsonl``."""
        return self.api_keys_file or self.state_dir / "api_keys.jsonl"

    def clickhouse_options(self) -> dict[str, object]:
        """clickhouse-connect ``get_client`` arguments besides the DSN (server only: TLS comes
        from an ``https://`` DSN; values given here win over the DSN's)."""
        if self.clickhouse_dsn.startswith("chdb:"):
            return {}
        options: dict[str, object] = {"verify": self.clickhouse_tls_verify}
        if self.clickhouse_user:
            options["username"] = self.clickhouse_user
        if self.clickhouse_password:
            options["password"] = self.clickhouse_password
        if self.clickhouse_ca_cert is not None:
            options["ca_cert"] = str(self.clickhouse_ca_cert)
        return options

    def stage_port(self, stage: str) -> int:
        """A stage's health port; a fused stage (``signals+safety+router``) takes its first
        stage's, which it replaces."""
        return self.metrics_port_base + STAGE_PORT_OFFSETS[stage.split("+")[0]]


class DataMissing(RuntimeError):
    """The shared data directory (or a file in it) is absent."""


def data_dir() -> Path:
    """``$WRP_DATA_DIR`` or ``../shared/data`` beside the project; raises :class:`DataMissing`."""
    root = Path(os.environ.get(DATA_ENV) or PROJECT_ROOT.parent / "shared" / "data")
    if not root.is_dir():
        raise DataMissing(
            f"shared data not found at {root}: set {DATA_ENV} to the directory holding "
            "routing/, safety/, pii/, benign_prompts/ (see shared/data/README.md)"
        )
    return root
