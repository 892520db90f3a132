"""ClickHouse tables. ReplacingMergeTree by natural key + FINAL in reads = one row per request.

``non_replicated_deduplication_window`` with an ``insert_deduplication_token`` per batch also
drops a replayed batch at insert time.
"""

from __future__ import annotations

DEDUP = "SETTINGS non_replicated_deduplication_window = 10000"

TABLES: dict[str, str] = {
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
    ttft_ms Float64,
    gpu_cost_usd Float64,
    energy_j Float64,
    fallback_from LowCardinality(String),
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
    ttft_ms Float64,
    gpu_cost_usd Float64,
    energy_j Float64,
    fallback_from LowCardinality(String),
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


def create_schema(client) -> None:  # clickhouse_connect Client
    for ddl in TABLES.values():
        client.command(ddl)
