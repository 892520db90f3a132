-- pools: per pool and endpoint: attempts, errors and their kinds, TTFT and latency percentiles
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
WHERE $__timeFilter(started_at) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
GROUP BY pool, endpoint
ORDER BY pool, endpoint
SETTINGS prefer_column_name_to_alias = 1
