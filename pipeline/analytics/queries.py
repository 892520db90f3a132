"""Named read-only queries: the only SQL that `wrp analytics`, `wrp report` and the Grafana
dashboards run.

The SQL is written once, in the Grafana ClickHouse plugin's dialect: ``$__timeFilter(col)``,
``$__timeInterval(col)`` and ``$__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)``.
Dashboards use it as it is; :func:`bind` expands the macros into ClickHouse query parameters for
the CLI and the report.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

TENANT = "$__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)"


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class NamedQuery:
    sql: str
    description: str
    #: extra parameters the query needs (besides the time range and tenant)
    params: tuple[str, ...] = ()
    #: a bulk export of stored requests: the operator's token only, never a tenant key
    operator_only: bool = False

    @property
    def per_tenant(self) -> bool:
        """Filtered by the tenant macro (on ``tenant`` or a joined table's ``r.tenant``)."""
        return any(m.group(2) == "tenant" for m in _CONDITIONAL_ALL.finditer(self.sql))

    @property
    def time_ranged(self) -> bool:
        return "$__timeFilter(" in self.sql


def _percentiles(state: str, name: str) -> str:
    """p50/p95/p99 columns from a ``quantiles(0.5, 0.95, 0.99)`` state column."""
    merged = f"quantilesMerge(0.5, 0.95, 0.99)({state})"
    return ",\n    ".join(
        f"round({merged}[{i}], 1) AS {name}_p{p}_ms" for i, p in ((1, 50), (2, 95), (3, 99))
    )


ROLLUP = "requests_minutely WHERE $__timeFilter(minute) AND " + TENANT
FEEDBACK_BY_REQUEST = """(
    SELECT request_id, avg(score) AS score, count() AS n
    FROM feedback FINAL GROUP BY request_id
)"""

QUERIES: dict[str, NamedQuery] = {
    "summary": NamedQuery(
        f"""
SELECT
    sum(requests) AS requests,
    sum(ok) AS ok,
    sum(blocked) AS blocked,
    sum(errors) AS errors,
    sum(cache_hits) AS cache_hits,
    {_percentiles("latency_ms", "latency")},
    {_percentiles("ttft_ms", "ttft")},
    sum(prompt_tokens + completion_tokens) AS tokens,
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(baseline_cost_usd), 6) AS strongest_cost_usd,
    round(100 * (1 - sum(cost_usd) / nullIf(sum(baseline_cost_usd), 0)), 1) AS savings_pct,
    round(sum(energy_j), 1) AS energy_j
FROM {ROLLUP}""",
        "totals: requests, outcomes, latency and TTFT percentiles, tokens, cost, savings",
    ),
    "decisions": NamedQuery(
        f"""
SELECT
    decision,
    sum(requests) AS requests,
    round(100 * sum(requests) / (SELECT sum(requests) FROM {ROLLUP}), 1) AS share_pct,
    sum(explored) AS explored,
    sum(cache_hits) AS cache_hits,
    sum(blocked) AS blocked,
    sum(errors) AS errors,
    topKWeighted(3)(model, requests) AS top_models,
    round(sum(cost_usd), 6) AS cost_usd
FROM {ROLLUP}
GROUP BY decision
ORDER BY sum(requests) DESC, decision""",
        "per decision: requests, share, exploration, cache hits, blocks, errors, top models",
    ),
    "models": NamedQuery(
        f"""
SELECT
    model,
    pool,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(fallbacks) AS fallbacks,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    {_percentiles("latency_ms", "latency")},
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(gpu_cost_usd), 6) AS gpu_cost_usd,
    round(sum(energy_j), 1) AS energy_j
FROM {ROLLUP} AND model != ''
GROUP BY model, pool
ORDER BY sum(requests) DESC, model""",
        "per model and pool: requests, errors, fallbacks, tokens, latency, token and GPU cost, "
        "energy",
    ),
    "pools": NamedQuery(
        f"""
SELECT
    pool,
    endpoint,
    count() AS attempts,
    countIf(status = 'error') AS errors,
    round(100 * countIf(status = 'error') / count(), 1) AS error_pct,
    topKIf(2)(error_type, status = 'error') AS top_errors,
    round(quantileIf(0.5)(ttft_ms, status = 'ok' AND ttft_ms > 0), 1) AS ttft_p50_ms,
    round(quantileIf(0.99)(ttft_ms, status = 'ok' AND ttft_ms > 0), 1) AS ttft_p99_ms,
    round(quantileIf(0.5)(latency_ms, status = 'ok'), 1) AS latency_p50_ms,
    round(quantileIf(0.99)(latency_ms, status = 'ok'), 1) AS latency_p99_ms
FROM dispatch_attempts FINAL
WHERE $__timeFilter(started_at) AND {TENANT}
GROUP BY pool, endpoint
ORDER BY pool, endpoint""",
        "per pool and endpoint: attempts, errors and their kinds, TTFT and latency percentiles",
    ),
    "latency": NamedQuery(
        f"""
SELECT
    pool,
    model,
    sum(ok) AS answered,
    {_percentiles("ttft_ms", "ttft")},
    {_percentiles("latency_ms", "latency")}
FROM {ROLLUP} AND pool != ''
GROUP BY pool, model
ORDER BY pool, model""",
        "per pool and model: p50/p95/p99 time to first token and end to end",
    ),
    "cost": NamedQuery(
        f"""
SELECT
    tenant,
    decision,
    model,
    sum(requests) AS requests,
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(baseline_cost_usd), 6) AS strongest_cost_usd,
    round(sum(baseline_cost_usd) - sum(cost_usd), 6) AS saved_usd,
    round(100 * (1 - sum(cost_usd) / nullIf(sum(baseline_cost_usd), 0)), 1) AS savings_pct,
    round(sum(gpu_cost_usd), 6) AS gpu_cost_usd
FROM {ROLLUP}
GROUP BY tenant, decision, model
ORDER BY sum(cost_usd) DESC, tenant, decision, model""",
        "per tenant, decision and model: token cost, what always sending to the strongest "
        "candidate would have cost, savings, GPU cost",
    ),
    "budgets": NamedQuery(
        f"""
SELECT
    tenant,
    budget,
    budget_action,
    toDate(created_at) AS day,
    count() AS requests,
    uniqExact(session_id) AS sessions,
    uniqExact(api_key) AS api_keys,
    sum(prompt_tokens + completion_tokens) AS tokens,
    round(sum(cost_usd), 6) AS cost_usd
FROM requests FINAL
WHERE $__timeFilter(created_at) AND {TENANT} AND budget != ''
GROUP BY tenant, budget, budget_action, day
ORDER BY day DESC, requests DESC, tenant, budget""",
        "per tenant, budget, action and day: requests a reached budget rejected, downgraded "
        "or flagged, the sessions and API keys they came from, what was still served",
    ),
    "safety": NamedQuery(
        f"""
SELECT
    safety_action,
    arrayJoin(if(empty(pii_entities), [''], pii_entities)) AS pii_entity,
    arrayStringConcat(moderation_categories, ',') AS categories,
    arrayStringConcat(arrayFilter(t -> t IN ('jailbreak', 'injection', 'harmful'),
        safety_triggers), ',') AS detectors,
    count() AS requests,
    round(avg(jailbreak_score), 3) AS mean_jailbreak_score,
    round(avg(injection_score), 3) AS mean_injection_score,
    round(avg(harmful_score), 3) AS mean_harmful_score
FROM requests FINAL
WHERE $__timeFilter(created_at) AND {TENANT} AND safety_action != ''
GROUP BY safety_action, pii_entity, categories, detectors
ORDER BY requests DESC, safety_action""",
        "safety actions (blocks, redactions), the learned detectors that fired (jailbreak, "
        "injection, harmful), PII entities and moderation categories",
    ),
    "answer_screening": NamedQuery(
        f"""
WITH sumMap(answer_triggers, arrayMap(t -> toUInt64(1), answer_triggers)) AS by_reason
SELECT
    toDate(created_at) AS day,
    tenant,
    count() AS answers_screened,
    countIf(answer_action = 'redact') AS redacted,
    countIf(answer_action = 'flag') AS flagged,
    countIf(answer_action = 'block') AS blocked,
    sum(answer_redacted) AS values_redacted,
    countIf(answer_attack_complied) AS attack_complied,
    arrayStringConcat(
        arrayMap((t, n) -> concat(t, ' ', toString(n)), by_reason.1, by_reason.2), ', '
    ) AS reasons
FROM requests FINAL
WHERE $__timeFilter(created_at) AND {TENANT} AND answer_action != ''
GROUP BY day, tenant
ORDER BY day, tenant""",
        "screening the answer per tenant and day: answers screened, redacted, flagged, blocked, "
        "PII values redacted, attacks complied with, and what fired",
    ),
    "feedback": NamedQuery(
        f"""
SELECT
    r.decision AS decision,
    r.model AS model,
    count() AS feedback,
    round(avg(f.score), 3) AS mean_score,
    countIf(f.score >= 0.5) AS positive,
    countIf(f.score < 0.5) AS negative,
    topK(3)(f.source) AS sources
FROM feedback AS f FINAL
INNER JOIN (SELECT request_id, tenant, decision, model FROM requests FINAL) AS r
    ON r.request_id = f.request_id
WHERE $__timeFilter(f.created_at) AND {TENANT.replace("(tenant", "(r.tenant")}
GROUP BY decision, model
ORDER BY feedback DESC, decision, model""",
        "feedback by decision and model: count, mean score (0-1), positive and negative",
    ),
    "implicit_feedback": NamedQuery(
        f"""
SELECT
    toDate(f.created_at) AS day,
    r.tenant AS tenant,
    r.decision AS decision,
    r.model AS model,
    count() AS judged,
    countIf(f.implicit = 'moved_on') AS moved_on,
    countIf(f.implicit = 'says_wrong') AS says_wrong,
    countIf(f.implicit = 'clarify') AS clarify,
    countIf(f.implicit = 're_ask') AS re_ask,
    round(avg(f.score), 3) AS mean_reward
FROM feedback AS f FINAL
INNER JOIN (SELECT request_id, tenant, decision, model FROM requests FINAL) AS r
    ON r.request_id = f.request_id
WHERE $__timeFilter(f.created_at) AND f.implicit != ''
    AND {TENANT.replace("(tenant", "(r.tenant")}
GROUP BY day, r.tenant, r.decision, r.model
ORDER BY day DESC, judged DESC, r.tenant, r.decision, r.model""",
        "implicit feedback (what users' next turns said about the previous answer) per day, "
        "tenant, decision and model: turns per label and the mean reward (0-1) they gave",
    ),
    "cache": NamedQuery(
        f"""
SELECT
    decision,
    sum(requests) AS requests,
    sum(cache_hits) AS cache_hits,
    round(100 * sum(cache_hits) / nullIf(sum(requests - blocked), 0), 1) AS hit_rate_pct,
    round(sum(cache_saved_usd), 6) AS saved_usd
FROM {ROLLUP}
GROUP BY decision
ORDER BY sum(cache_hits) DESC, decision""",
        "semantic cache per decision: hits, hit rate, cost saved (at the strongest candidate)",
    ),
    "learning": NamedQuery(
        """
SELECT
    decision,
    model,
    max(version) AS version,
    argMax(observations, version) AS observations,
    round(argMax(successes, version), 2) AS successes,
    round(argMax(failures, version), 2) AS failures,
    round(argMax(successes / nullIf(successes + failures, 0), version), 3) AS success_rate,
    max(updated_at) AS updated_at
FROM router_states FINAL
WHERE $__timeFilter(updated_at)
GROUP BY decision, model
ORDER BY decision, success_rate DESC, model""",
        "router-state per decision and model: latest version, evidence and success rate",
    ),
    "session_switches": NamedQuery(
        f"""
SELECT
    toDate(created_at) AS day,
    tenant,
    uniqExact(session_id) AS sessions,
    count() AS session_turns,
    countIf(switched_from != '') AS switches,
    round(countIf(switched_from != '') / uniqExact(session_id), 3) AS switches_per_session,
    uniqExactIf(session_id, switched_from != '') AS sessions_switched,
    round(100 * countIf(sticky) / count(), 1) AS held_pct,
    round(100 * (1 - countIf(switched_from != '')
        / nullIf(count() - uniqExact(session_id), 0)), 1) AS stayed_pct
FROM requests FINAL
WHERE $__timeFilter(created_at) AND {TENANT} AND session_id != '' AND model != ''
    AND NOT cache_hit
GROUP BY day, tenant
ORDER BY day, tenant""",
        "sticky sessions per day and tenant: sessions, routed turns, model switches (per "
        "session, sessions with one), turns the router held on the session's model over the "
        "strategy's choice, follow-up turns that stayed on it",
    ),
    "dlq": NamedQuery(
        """
SELECT topic, stage, error_type, count() AS messages, max(failed_at) AS last_at,
       any(error) AS example
FROM dead_letters FINAL
WHERE $__timeFilter(failed_at)
GROUP BY topic, stage, error_type
ORDER BY messages DESC, topic, stage""",
        "dead letters by topic, stage and reason, with an example",
    ),
    "traffic": NamedQuery(
        f"""
SELECT $__timeInterval(minute) AS time, decision, model, sum(requests) AS requests
FROM {ROLLUP}
GROUP BY time, decision, model
ORDER BY time, decision, model""",
        "requests over time by decision and model",
    ),
    "spend": NamedQuery(
        f"""
SELECT
    $__timeInterval(minute) AS time,
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(baseline_cost_usd), 6) AS strongest_cost_usd,
    round(sum(gpu_cost_usd), 6) AS gpu_cost_usd
FROM {ROLLUP}
GROUP BY time
ORDER BY time""",
        "cost over time: routed, always-strongest, GPU",
    ),
    "tool_savings": NamedQuery(
        f"""
SELECT
    tenant,
    toDate(created_at) AS day,
    count() AS requests_with_tools,
    countIf(tools_kept < tools_offered) AS narrowed,
    sum(tools_offered) AS tools_offered,
    sum(tools_kept) AS tools_kept,
    sum(tool_tokens) AS tool_tokens,
    sum(tool_tokens_saved) AS tool_tokens_saved,
    round(100 * sum(tool_tokens_saved) / nullIf(sum(tool_tokens), 0), 1) AS saved_pct
FROM requests FINAL
WHERE $__timeFilter(created_at) AND {TENANT} AND tools_offered > 0
GROUP BY tenant, day
ORDER BY day, tenant""",
        "tool selection per tenant and day: requests with tools, how many were narrowed, tools "
        "offered and kept, tool tokens offered and saved",
    ),
    "learning_trend": NamedQuery(
        """
SELECT
    $__timeInterval(updated_at) AS time,
    concat(decision, ' / ', model) AS arm,
    round(argMax(successes / nullIf(successes + failures, 0), version), 3) AS success_rate
FROM router_states FINAL
WHERE $__timeFilter(updated_at)
GROUP BY time, arm
ORDER BY time, arm""",
        "learner success rate per arm over time",
    ),
    "feedback_trend": NamedQuery(
        """
SELECT $__timeInterval(created_at) AS time, round(avg(score), 3) AS mean_score,
       count() AS feedback
FROM feedback FINAL
WHERE $__timeFilter(created_at)
GROUP BY time
ORDER BY time""",
        "mean feedback score over time",
    ),
    "totals": NamedQuery(
        """
SELECT
    (SELECT count() FROM requests FINAL) AS requests,
    (SELECT countIf(status = 'ok') FROM requests FINAL) AS ok,
    (SELECT countIf(status = 'blocked') FROM requests FINAL) AS blocked,
    (SELECT countIf(status = 'error') FROM requests FINAL) AS errors,
    (SELECT sum(requests) FROM requests_minutely) AS rolled_up,
    (SELECT count() FROM dispatch_attempts FINAL) AS attempts,
    (SELECT count() FROM feedback FINAL) AS feedback,
    (SELECT count() FROM dead_letters FINAL) AS dead_letters,
    (SELECT count() FROM pool_states FINAL) AS pool_samples,
    (SELECT count() FROM router_states FINAL) AS router_versions""",
        "row counts of every table, all time (deduplicated)",
    ),
    "counted": NamedQuery(
        f"""
SELECT
    (SELECT count() FROM requests FINAL WHERE $__timeFilter(created_at) AND {TENANT}) AS stored,
    (SELECT sum(requests) FROM {ROLLUP}) AS rolled_up""",
        "requests stored (deduplicated rows) and counted in the minutely rollup: equal unless "
        "something reached the rollup twice",
    ),
    "migrations": NamedQuery(
        "SELECT version, name, applied_at FROM schema_migrations FINAL ORDER BY version",
        "schema migrations applied, in order",
    ),
    "labelled": NamedQuery(
        f"""
SELECT r.request_id AS request_id, r.decision AS decision, r.model AS model,
       r.status AS status, r.prompt_tokens AS prompt_tokens,
       r.completion_tokens AS completion_tokens, r.cost_usd AS cost_usd,
       f.score AS score, f.n AS feedback, r.envelope AS envelope
FROM (
    SELECT * FROM requests FINAL
    WHERE $__timeFilter(created_at) AND {TENANT} AND model != '' AND NOT cache_hit
) AS r
LEFT JOIN {FEEDBACK_BY_REQUEST} AS f ON f.request_id = r.request_id
WHERE f.n > 0 OR r.status = 'error'
ORDER BY r.created_at DESC
LIMIT 200000""",
        "the newest 200,000 requests labelled by their feedback (a failed call without feedback "
        "scores 0), with the scrubbed request: what `wrp router train --from-analytics` learns "
        "from (operators only)",
        operator_only=True,
    ),
    "request": NamedQuery(
        f"""
SELECT request_id, tenant, status, error_type, final_stage, domain, safety_action, decision,
       model, pool, endpoint, attempts, latency_ms, ttft_ms, cost_usd, baseline_cost_usd,
       gpu_cost_usd, energy_j, answer_action, answer_triggers, answer_pii_entities,
       answer_redacted, answer_attack_complied, trail
FROM requests FINAL
WHERE request_id = {{request_id:String}} AND {TENANT}""",
        "one request's row, by request_id",
        ("request_id",),
    ),
}

#: Inside a query a name means the table's column, not an output alias of the same name
#: (``sum(cost_usd) AS cost_usd`` next to ``sum(cost_usd) / sum(baseline_cost_usd)``).
COLUMNS_FIRST = "\nSETTINGS prefer_column_name_to_alias = 1"
QUERIES = {name: replace(q, sql=q.sql + COLUMNS_FIRST) for name, q in QUERIES.items()}

_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")
_TIME_INTERVAL = re.compile(r"\$__timeInterval\(([^)]+)\)")
_CONDITIONAL_ALL = re.compile(r"\$__conditionalAll\((.+?), \$(\w+)\)")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise QueryError(f"cannot read duration {text!r}: use a number and s, m, h, d or w (1h)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def bind(query: NamedQuery, params: dict[str, str]) -> tuple[str, dict[str, object]]:
    """Expand the Grafana macros into ClickHouse parameters.

    ``params``: ``since`` (a duration, default 24h), ``tenant`` (default: every tenant), and the
    query's own ``params``.
    """
    missing = [p for p in query.params if not params.get(p)]
    if missing:
        raise QueryError(f"this query needs {', '.join('--' + p for p in missing)}")
    tenant = params.get("tenant") or ""
    if tenant and not query.per_tenant:
        raise QueryError("this query is not per tenant: leave out --tenant")
    since_s = parse_duration(params.get("since") or "24h")
    to_ms = int(time.time() * 1000) + 60_000  # rows stamped a little ahead of this clock
    values: dict[str, object] = {p: params[p] for p in query.params}
    values |= {
        "from_ms": to_ms - 60_000 - int(since_s * 1000),
        "to_ms": to_ms,
        "interval_s": max(60, int(since_s / 60) // 60 * 60),
        "tenant": tenant,
    }
    sql = _TIME_FILTER.sub(
        r"\1 >= fromUnixTimestamp64Milli({from_ms:Int64}) "
        r"AND \1 <= fromUnixTimestamp64Milli({to_ms:Int64})",
        query.sql,
    )
    sql = _TIME_INTERVAL.sub(
        r"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s:UInt32} SECOND)", sql
    )

    def conditional(match: re.Match[str]) -> str:
        if not tenant:
            return "1 = 1"
        return match.group(1).replace("${tenant:singlequote}", "{tenant:String}")

    return _CONDITIONAL_ALL.sub(conditional, sql), values
