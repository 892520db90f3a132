-- spend: cost over time: routed, always-strongest, GPU
SELECT
    $__timeInterval(minute) AS time,
    round(sum(cost_usd), 6) AS cost_usd,
    round(sum(baseline_cost_usd), 6) AS strongest_cost_usd,
    round(sum(gpu_cost_usd), 6) AS gpu_cost_usd
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
GROUP BY time
ORDER BY time
SETTINGS prefer_column_name_to_alias = 1
