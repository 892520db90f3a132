"""ClickHouse schema as versioned, idempotent migrations (``wrp analytics migrate``; the
analytics stage applies them at start).

Every step is safe to run twice (``IF NOT EXISTS``, or :class:`Rebuild`, which checks before it
acts), so a migration interrupted half way is simply applied again; ``schema_migrations`` records
each version once it completed.

The layout (version 3) follows the LLM-observability schemas of Langfuse and Helicone: raw tables
are ReplacingMergeTree by natural key (read with FINAL, so a redelivered row counts once),
partitioned by month, ordered tenant first then day, with a bloom-filter index on ``request_id``
for point lookups, LowCardinality for every enumerable column, Delta+ZSTD on timestamps, ZSTD on
JSON, and TTLs (requests and attempts 90 days, pool-state samples 30, dead letters 30). The minutely
rollup ``requests_minutely`` is an AggregatingMergeTree fed by a materialized view on ``requests``,
with quantile states, kept 400 days. ``non_replicated_deduplication_window`` on the source and
the rollup with an ``insert_deduplication_token`` per batch and
``deduplicate_blocks_in_dependent_materialized_views`` drops a replayed batch before the view
sees it; the sink also skips requests already stored (see :mod:`pipeline.stages.analytics`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

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


def _requests_v3(name: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {name} (
    request_id String,
    tenant LowCardinality(String),
    session_id String,
    created_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    completed_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
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
    candidates Array(LowCardinality(String)),
    explored Bool,
    cache_hit Bool,
    policy_version LowCardinality(String),
    model LowCardinality(String),
    pool LowCardinality(String),
    endpoint LowCardinality(String),
    attempts UInt8,
    latency_ms Float64 CODEC(ZSTD(1)),
    pool_latency_ms Float64 CODEC(ZSTD(1)),
    completion_tokens UInt32,
    cost_usd Float64 CODEC(ZSTD(1)),
    ttft_ms Float64 CODEC(ZSTD(1)),
    gpu_cost_usd Float64 CODEC(ZSTD(1)),
    energy_j Float64 CODEC(ZSTD(1)),
    fallback_from LowCardinality(String),
    baseline_model LowCardinality(String),
    baseline_cost_usd Float64 CODEC(ZSTD(1)),
    trail String CODEC(ZSTD(3)),
    envelope String CODEC(ZSTD(3)),
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (tenant, toDate(created_at), request_id)
TTL toDateTime(created_at) + INTERVAL 90 DAY
{DEDUP}"""


#: The minutely rollup of ``requests`` (the materialized view and the backfill share it).
ROLLUP_SELECT = """
SELECT
    toStartOfMinute(r.created_at) AS minute,
    tenant,
    if(r.decision = '', concat('(', r.status, ')'), r.decision) AS decision,
    model,
    pool,
    count() AS requests,
    countIf(r.status = 'ok') AS ok,
    countIf(r.status = 'blocked') AS blocked,
    countIf(r.status = 'error') AS errors,
    countIf(r.cache_hit) AS cache_hits,
    countIf(r.explored) AS explored,
    countIf(r.fallback_from != '') AS fallbacks,
    sum(r.prompt_tokens) AS prompt_tokens,
    sum(r.completion_tokens) AS completion_tokens,
    sum(r.cost_usd) AS cost_usd,
    sum(r.baseline_cost_usd) AS baseline_cost_usd,
    sumIf(r.baseline_cost_usd, r.cache_hit) AS cache_saved_usd,
    sum(r.gpu_cost_usd) AS gpu_cost_usd,
    sum(r.energy_j) AS energy_j,
    quantilesStateIf(0.5, 0.95, 0.99)(r.latency_ms, r.status = 'ok') AS latency_ms,
    quantilesStateIf(0.5, 0.95, 0.99)(r.ttft_ms, r.status = 'ok' AND NOT r.cache_hit) AS ttft_ms
FROM requests AS r
GROUP BY minute, tenant, decision, model, pool"""

V3_TABLES: dict[str, str] = {
    "dispatch_attempts": f"""
CREATE TABLE IF NOT EXISTS dispatch_attempts (
    request_id String,
    attempt UInt8,
    tenant LowCardinality(String),
    decision LowCardinality(String),
    model LowCardinality(String),
    pool LowCardinality(String),
    endpoint LowCardinality(String),
    status LowCardinality(String),
    error_type LowCardinality(String),
    started_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    latency_ms Float64 CODEC(ZSTD(1)),
    ttft_ms Float64 CODEC(ZSTD(1)),
    INDEX idx_request_id request_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (pool, endpoint, toDate(started_at), request_id, attempt, started_at)
TTL toDateTime(started_at) + INTERVAL 90 DAY
{DEDUP}""",
    "pool_states": f"""
CREATE TABLE IF NOT EXISTS pool_states (
    pool LowCardinality(String),
    endpoint LowCardinality(String),
    instance LowCardinality(String),
    sampled_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    requests UInt64,
    errors UInt64,
    error_rate Float32,
    in_flight UInt32,
    capacity UInt32,
    queue_estimate Float32,
    ttft_ms_ewma Float32,
    latency_ms_ewma Float32,
    kv_usage Float32,
    circuit LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(sampled_at)
ORDER BY (pool, endpoint, instance, sampled_at)
TTL toDateTime(sampled_at) + INTERVAL 30 DAY
{DEDUP}""",
    "router_states": f"""
CREATE TABLE IF NOT EXISTS router_states (
    decision LowCardinality(String),
    model LowCardinality(String),
    version UInt64,
    successes Float64,
    failures Float64,
    observations UInt64,
    updated_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
) ENGINE = ReplacingMergeTree
ORDER BY (decision, model, version)
{DEDUP}""",
    "requests_minutely": f"""
CREATE TABLE IF NOT EXISTS requests_minutely (
    minute DateTime('UTC'),
    tenant LowCardinality(String),
    decision LowCardinality(String),
    model LowCardinality(String),
    pool LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    ok SimpleAggregateFunction(sum, UInt64),
    blocked SimpleAggregateFunction(sum, UInt64),
    errors SimpleAggregateFunction(sum, UInt64),
    cache_hits SimpleAggregateFunction(sum, UInt64),
    explored SimpleAggregateFunction(sum, UInt64),
    fallbacks SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    baseline_cost_usd SimpleAggregateFunction(sum, Float64),
    cache_saved_usd SimpleAggregateFunction(sum, Float64),
    gpu_cost_usd SimpleAggregateFunction(sum, Float64),
    energy_j SimpleAggregateFunction(sum, Float64),
    latency_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    ttft_ms AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, tenant, decision, model, pool)
TTL minute + INTERVAL 400 DAY
{DEDUP}""",
    "requests_minutely_mv": f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS requests_minutely_mv TO requests_minutely AS
{ROLLUP_SELECT}""",
}


def _feedback_v4(name: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {name} (
    request_id String,
    source LowCardinality(String),
    tenant LowCardinality(String),
    created_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    score Float32,
    judgement LowCardinality(String),
    comment String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree(created_at)
ORDER BY (request_id, source)
{DEDUP}"""


def _dead_letters_v4(name: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS {name} (
    topic LowCardinality(String),
    partition UInt32,
    offset UInt64,
    record_timestamp Int64,
    stage LowCardinality(String),
    error_type LowCardinality(String),
    error String,
    request_id String,
    raw String CODEC(ZSTD(3)),
    failed_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
) ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, record_timestamp)
TTL toDateTime(failed_at) + INTERVAL 30 DAY
{DEDUP}"""


CACHE_ENTRIES = f"""
CREATE TABLE IF NOT EXISTS cache_entries (
    tenant LowCardinality(String),
    decision LowCardinality(String),
    params String,
    key String,
    embedding String,
    model LowCardinality(String),
    response String CODEC(ZSTD(3)),
    stored_at DateTime64(3, 'UTC'),
    expires_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(stored_at)
ORDER BY (tenant, decision, params, key)
TTL toDateTime(expires_at)
{DEDUP}"""


#: Migration 5's rollup: a time to first token is only known for streamed answers (a plain pool
#: call has none, stored as 0), so only those enter the TTFT quantiles.
ROLLUP_SELECT_V5 = ROLLUP_SELECT.replace(
    "(r.ttft_ms, r.status = 'ok' AND NOT r.cache_hit)",
    "(r.ttft_ms, r.status = 'ok' AND NOT r.cache_hit AND r.ttft_ms > 0)",
)


@dataclass(frozen=True)
class Rebuild:
    """Re-create ``table`` with ``ddl`` (a new ordering key or engine, which ALTER cannot change)
    when its sorting key or columns differ, copying the rows; checks before it acts, so it is
    idempotent. ``ddl`` takes the table's name as its only format argument."""

    table: str
    ddl: Callable[[str], str]

    def apply(self, client) -> None:
        staging = f"{self.table}__rebuild"
        client.command(f"DROP TABLE IF EXISTS {staging}")
        client.command(self.ddl(staging))
        if not _exists(client, self.table):
            client.command(f"RENAME TABLE {staging} TO {self.table}")
            return
        old, new = _shape(client, self.table), _shape(client, staging)
        if old == new:
            client.command(f"DROP TABLE {staging}")
            return
        common = [c for c in new[1] if c in old[1]]
        rows = client.query(f"SELECT count() FROM {self.table}").result_rows[0][0]
        if rows:
            log.info("migrating %s: copying %d rows to the new layout", self.table, rows)
        columns = ", ".join(common)
        client.command(f"INSERT INTO {staging} ({columns}) SELECT {columns} FROM {self.table}")
        client.command(f"EXCHANGE TABLES {self.table} AND {staging}")
        client.command(f"DROP TABLE {staging}")


def _exists(client, table: str) -> bool:
    return bool(
        client.query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            "AND name = {table:String}",
            parameters={"table": table},
        ).result_rows[0][0]
    )


def _shape(client, table: str) -> tuple[str, list[str]]:
    """(sorting key, column names) of ``table``."""
    key = client.query(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() "
        "AND name = {table:String}",
        parameters={"table": table},
    ).result_rows[0][0]
    columns = client.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() "
        "AND table = {table:String} ORDER BY position",
        parameters={"table": table},
    ).result_rows
    return key, [c[0] for c in columns]


@dataclass(frozen=True)
class Backfill:
    """Fill ``table`` from ``select`` once: only while ``table`` is empty (rows that existed
    before a materialized view was created never reach it otherwise)."""

    table: str
    select: str

    def apply(self, client) -> None:
        if client.query(f"SELECT count() FROM {self.table}").result_rows[0][0] == 0:
            client.command(f"INSERT INTO {self.table} {self.select}")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str | Rebuild | Backfill, ...]


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
    Migration(
        3,
        "observability layout: requests by tenant and day with TTL and codecs, dispatch "
        "attempts, pool-state samples, router-state versions, minutely rollups",
        (
            Rebuild("requests", _requests_v3),
            "DROP TABLE IF EXISTS outcomes",
            *V3_TABLES.values(),
            Backfill("requests_minutely", ROLLUP_SELECT.replace("AS r\n", "AS r FINAL\n")),
            "ALTER TABLE dead_letters MODIFY TTL toDateTime(failed_at) + INTERVAL 30 DAY",
        ),
    ),
    Migration(
        4,
        "trust: one judgement per request and source (the last wins) with its tenant; dead "
        "letters keyed across broker restarts; router-state and cache snapshots to re-seed from",
        (
            Rebuild("feedback", _feedback_v4),
            Rebuild("dead_letters", _dead_letters_v4),
            "ALTER TABLE router_states ADD COLUMN IF NOT EXISTS design Array(Float64)",
            "ALTER TABLE router_states ADD COLUMN IF NOT EXISTS response Array(Float64)",
            CACHE_ENTRIES,
        ),
    ),
    Migration(
        5,
        "TTFT quantiles of streamed answers only (plain pool calls have no first token)",
        (
            "DROP VIEW IF EXISTS requests_minutely_mv",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS requests_minutely_mv TO requests_minutely AS\n"
            f"{ROLLUP_SELECT_V5}",
        ),
    ),
    Migration(
        6,
        "safety: the injection detector's score and what fired (jailbreak, injection, harmful, "
        "moderation:<category>, pii:<ENTITY>)",
        (
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS injection_score Float32 DEFAULT 0",
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS safety_triggers "
            "Array(LowCardinality(String)) DEFAULT []",
        ),
    ),
    Migration(
        7,
        "router-state snapshots keep the feedback residual and the learnt answer length, so a "
        "restore brings them back",
        (
            "ALTER TABLE router_states ADD COLUMN IF NOT EXISTS residual Float64 DEFAULT 0",
            "ALTER TABLE router_states ADD COLUMN IF NOT EXISTS completions Float64 DEFAULT 0",
            "ALTER TABLE router_states ADD COLUMN IF NOT EXISTS completion_tokens Float64 "
            "DEFAULT 0",
        ),
    ),
    Migration(
        8,
        "tool selection: tools offered and kept, tokens of the tools offered and saved",
        tuple(
            f"ALTER TABLE requests ADD COLUMN IF NOT EXISTS {column} UInt32 DEFAULT 0"
            for column in ("tools_offered", "tools_kept", "tool_tokens", "tool_tokens_saved")
        ),
    ),
    Migration(
        9,
        "implicit feedback: the label read from the user's next turn (moved_on, says_wrong, "
        "clarify, re_ask; empty for explicit feedback)",
        (
            "ALTER TABLE feedback ADD COLUMN IF NOT EXISTS implicit LowCardinality(String) "
            "DEFAULT ''",
        ),
    ),
    Migration(
        10,
        "sticky sessions: whether the router kept a session on its previous model, and the "
        "model a turn switched away from",
        (
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS sticky Bool DEFAULT false",
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS switched_from "
            "LowCardinality(String) DEFAULT ''",
        ),
    ),
    Migration(
        11,
        "screening the answer: its action, what fired, PII entities found, values redacted, "
        "an attack the answer complied with",
        tuple(
            f"ALTER TABLE requests ADD COLUMN IF NOT EXISTS {column}"
            for column in (
                "answer_action LowCardinality(String) DEFAULT ''",
                "answer_triggers Array(LowCardinality(String)) DEFAULT []",
                "answer_pii_entities Array(LowCardinality(String)) DEFAULT []",
                "answer_redacted UInt32 DEFAULT 0",
                "answer_attack_complied Bool DEFAULT false",
            )
        ),
    ),
    Migration(
        12,
        "budgets: the caller's API key id, and the budget that rejected, downgraded or flagged "
        "a request",
        (
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS api_key String DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS budget LowCardinality(String) "
            "DEFAULT ''",
            "ALTER TABLE requests ADD COLUMN IF NOT EXISTS budget_action LowCardinality(String) "
            "DEFAULT ''",
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
            if isinstance(statement, Rebuild | Backfill):
                statement.apply(client)
            else:
                client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, datetime.now(UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        applied.append(migration)
    return applied
