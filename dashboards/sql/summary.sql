-- summary: totals: requests, outcomes, latency and TTFT percentiles, tokens, cost, savings
SELECT
    sum(requests) AS requests,
    sum(ok) AS ok,
    sum(blocked) AS blocked,
    sum(errors) AS errors,
    sum(cache_hits) AS cache_hits,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[1], 1) AS latency_p50_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[2], 1) AS latency_p95_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[3], 1) AS latency_p99_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)[1], 1) AS ttft_p50_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)[2], 1) AS ttft_p95_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)[3], 1) AS ttft_p99_ms,
    sum(prompt_tokens + completion_tokens) AS tokens,
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(baseline_cost_usd), 6) AS strongest_cost_usd,
    round(100 * (1 - sum(cost_usd) / nullIf(sum(baseline_cost_usd), 0)), 1) AS savings_pct,
    round(sum(energy_j), 1) AS energy_j
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
SETTINGS prefer_column_name_to_alias = 1
