"""Named read-only queries: the only SQL that `wrp analytics`, reports and dashboards run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedQuery:
    sql: str
    description: str
    params: tuple[str, ...] = ()


QUERIES: dict[str, NamedQuery] = {
    "summary": NamedQuery(
        """
SELECT
    if(r.decision = '', concat('(', r.status, ')'), r.decision) AS decision,
    r.model AS model,
    r.pool AS pool,
    count() AS requests,
    countIf(r.status = 'blocked') AS blocked,
    countIf(r.status = 'error') AS errors,
    round(quantileIf(0.5)(r.latency_ms, r.status = 'ok'), 1) AS p50_ms,
    round(quantileIf(0.95)(r.latency_ms, r.status = 'ok'), 1) AS p95_ms,
    sum(r.prompt_tokens + r.completion_tokens) AS tokens,
    round(sum(r.cost_usd), 6) AS cost_usd,
    round(avg(fb.score), 3) AS mean_feedback,
    count(fb.score) AS feedback_n
FROM requests AS r FINAL
LEFT JOIN (
    SELECT request_id, avg(score) AS score FROM feedback FINAL GROUP BY request_id
) AS fb ON fb.request_id = r.request_id
GROUP BY decision, model, pool
ORDER BY requests DESC, decision, model
SETTINGS join_use_nulls = 1""",
        "per decision, model and pool: requests, blocked, errors, latency, tokens, cost, feedback",
    ),
    "pools": NamedQuery(
        """
SELECT
    pool,
    endpoint,
    count() AS requests,
    countIf(status = 'error') AS errors,
    countIf(fallback_from != '') AS fallbacks,
    round(avg(attempts), 2) AS mean_attempts,
    round(quantileIf(0.5)(ttft_ms, status = 'ok'), 1) AS ttft_p50_ms,
    round(quantileIf(0.99)(ttft_ms, status = 'ok'), 1) AS ttft_p99_ms,
    round(quantileIf(0.5)(latency_ms, status = 'ok'), 1) AS latency_p50_ms,
    round(quantileIf(0.99)(latency_ms, status = 'ok'), 1) AS latency_p99_ms,
    round(sum(gpu_cost_usd), 6) AS gpu_cost_usd,
    round(sum(energy_j), 1) AS energy_j
FROM outcomes FINAL
GROUP BY pool, endpoint
ORDER BY pool, endpoint""",
        "per pool and endpoint: requests, errors, fallbacks, attempts, TTFT and latency "
        "percentiles, GPU cost and energy",
    ),
    "totals": NamedQuery(
        """
SELECT
    (SELECT count() FROM requests FINAL) AS requests,
    (SELECT countIf(status = 'ok') FROM requests FINAL) AS ok,
    (SELECT countIf(status = 'blocked') FROM requests FINAL) AS blocked,
    (SELECT countIf(status = 'error') FROM requests FINAL) AS errors,
    (SELECT count() FROM outcomes FINAL) AS outcomes,
    (SELECT count() FROM feedback FINAL) AS feedback,
    (SELECT count() FROM dead_letters FINAL) AS dead_letters""",
        "row counts of every table (deduplicated)",
    ),
    "safety": NamedQuery(
        """
SELECT safety_action,
       arrayJoin(if(empty(pii_entities), [''], pii_entities)) AS pii_entity,
       arrayStringConcat(moderation_categories, ',') AS categories,
       count() AS requests, round(avg(jailbreak_score), 3) AS mean_jailbreak_score,
       round(avg(harmful_score), 3) AS mean_harmful_score
FROM requests FINAL
WHERE safety_action != ''
GROUP BY safety_action, pii_entity, categories ORDER BY requests DESC""",
        "safety actions, PII entities and moderation categories found",
    ),
    "dead_letters": NamedQuery(
        """
SELECT topic, stage, error_type, count() AS messages, any(error) AS example
FROM dead_letters FINAL GROUP BY topic, stage, error_type ORDER BY messages DESC""",
        "dead letters by topic, stage and reason",
    ),
    "migrations": NamedQuery(
        "SELECT version, name, applied_at FROM schema_migrations FINAL ORDER BY version",
        "schema migrations applied, in order",
        (),
    ),
    "request": NamedQuery(
        """
SELECT request_id, tenant, status, error_type, final_stage, domain, safety_action, decision,
       model, pool, endpoint, attempts, latency_ms, ttft_ms, cost_usd, gpu_cost_usd, energy_j,
       trail
FROM requests FINAL WHERE request_id = {request_id:String}""",
        "one request's row, by request_id",
        ("request_id",),
    ),
}
