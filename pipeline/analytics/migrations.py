"""ClickHouse schema as versioned, idempotent migrations (``wrp analytics migrate``; the
analytics stage applies them at start).

Every statement is safe to run twice (``IF NOT EXISTS``), so a migration interrupted half way is
simply applied again; ``schema_migrations`` records each version once it completed. Tables are
ReplacingMergeTree by natural key and read with FINAL (one row per request);
``non_replicated_deduplication_window`` with an ``insert_deduplication_token`` per batch also
drops a replayed batch at insert time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

DEDUP = "SETTINGS non_replicated_deduplication_window = 10000"

V1_TABLES: dict[str, str] = {
    "requests": f"""
CREATE TABLE IF NOT EXISTS requests (
    request_id String,
    tenant LowCardinality(String),
    session_id String,
    created_at DateTime64(3, 'UTC'),
    completed_at DateTime64(3, 'UTC'),
    status LowCardinality(String),
    error_type LowCardinality(String),
    final_stage LowCardinality(String),
    prompt_tokens UInt32,
    turns UInt32,
    tools_present Bool,
    images_present Bool,
    context_class LowCardinality(String),
    domain LowCardinality(String),
    complexity LowCardinality(String),
    language LowCardinality(String),
    safety_action LowCardinality(String),
    jailbreak_score Float32,
    harmful_score Float32,
    moderation_categories Array(LowCardinality(String)),
    pii_entities Array(LowCardinality(String)),
    decision LowCardinality(String),
    strategy LowCardinality(String),
    candidates Array(String),
    explored Bool,
    cache_hit Bool,
    policy_version LowCardinality(String),
    model LowCardinality(String),
    pool LowCardinality(String),
    endpoint String,
    attempts UInt8,
    latency_ms Float64,
    pool_latency_ms Float64,
    completion_tokens UInt32,
    cost_usd Float64,
    trail String,
    envelope String
) ENGINE = ReplacingMergeTree ORDER BY request_id {DEDUP}""",
    "outcomes": f"""
CREATE TABLE IF NOT EXISTS outcomes (
    request_id String,
    decision LowCardinality(String),
    model LowCardinality(String),
    pool LowCardinality(String),
    endpoint String,
    status LowCardinality(String),
    error_type LowCardinality(String),
    attempts UInt8,
    latency_ms Float64,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cost_usd Float64,
    dispatched_at DateTime64(3, 'UTC'),
    completed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY request_id {DEDUP}""",
    "feedback": f"""
CREATE TABLE IF NOT EXISTS feedback (
    request_id String,
    source LowCardinality(String),
    created_at DateTime64(3, 'UTC'),
    score Float32,
    judgement LowCardinality(String),
    comment String
) ENGINE = ReplacingMergeTree ORDER BY (request_id, source, created_at) {DEDUP}""",
    "dead_letters": f"""
CREATE TABLE IF NOT EXISTS dead_letters (
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    stage LowCardinality(String),
    error_type LowCardinality(String),
    error String,
    request_id String,
    raw String,
    failed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY (topic, partition, offset) {DEDUP}""",
}


#: Columns added by issue 5 (the Pool): time to first token, GPU cost and energy, fallback.
POOL_COLUMNS = (
    "ttft_ms Float64 DEFAULT 0",
    "gpu_cost_usd Float64 DEFAULT 0",
    "energy_j Float64 DEFAULT 0",
    "fallback_from LowCardinality(String) DEFAULT ''",
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "requests, outcomes, feedback, dead letters", tuple(V1_TABLES.values())),
    Migration(
        2,
        "pool columns: TTFT, GPU cost, energy, fallback model",
        tuple(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}"
            for table in ("requests", "outcomes")
            for column in POOL_COLUMNS
        ),
    ),
)

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY version"""


def applied_versions(client) -> set[int]:  # clickhouse_connect Client
    client.command(LEDGER)
    rows = client.query("SELECT version FROM schema_migrations FINAL").result_rows
    return {int(row[0]) for row in rows}


def migrate(client) -> list[Migration]:
    """Apply every migration not recorded yet, in order; returns the ones applied now."""
    done = applied_versions(client)
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, datetime.now(UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        applied.append(migration)
    return applied
