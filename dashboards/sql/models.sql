-- models: per model and pool: requests, errors, fallbacks, tokens, latency, token and GPU cost, energy
SELECT
    model,
    pool,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(fallbacks) AS fallbacks,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[1], 1) AS latency_p50_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[2], 1) AS latency_p95_ms,
    round(quantilesMerge(0.5, 0.95, 0.99)(latency_ms)[3], 1) AS latency_p99_ms,
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(gpu_cost_usd), 6) AS gpu_cost_usd,
    round(sum(energy_j), 1) AS energy_j
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND model != ''
GROUP BY model, pool
ORDER BY sum(requests) DESC, model
SETTINGS prefer_column_name_to_alias = 1
