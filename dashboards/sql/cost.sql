-- cost: per tenant, decision and model: token cost, what always sending to the strongest candidate would have cost, savings, GPU cost
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
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
GROUP BY tenant, decision, model
ORDER BY sum(cost_usd) DESC, tenant, decision, model
SETTINGS prefer_column_name_to_alias = 1
