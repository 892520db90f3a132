-- budgets: per tenant, budget, action and day: requests a reached budget rejected, downgraded or flagged, the sessions and API keys they came from, what was still served
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
WHERE $__timeFilter(created_at) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND budget != ''
GROUP BY tenant, budget, budget_action, day
ORDER BY day DESC, requests DESC, tenant, budget
SETTINGS prefer_column_name_to_alias = 1
