-- latency: per pool and model: p50/p95/p99 time to first token and end to end
SELECT
    pool,
    model,
    sum(ok) AS answered,
    round(quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)[1], 1) AS ttft_p50_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)[2], 1) AS ttft_p95_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(ttft_ms)[3], 1) AS ttft_p99_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[1], 1) AS latency_p50_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[2], 1) AS latency_p95_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[3], 1) AS latency_p99_ms
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND pool != ''
GROUP BY pool, model
ORDER BY pool, model
SETTINGS prefer_column_name_to_alias = 1
