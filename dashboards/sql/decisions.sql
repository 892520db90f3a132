-- decisions: per decision: requests, share, exploration, cache hits, blocks, errors, top models
SELECT
    decision,
    sum(requests) AS requests,
    round(100 * sum(requests) / (SELECT sum(requests) FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)), 1) AS share_pct,
    sum(explored) AS explored,
    sum(cache_hits) AS cache_hits,
    sum(blocked) AS blocked,
    sum(errors) AS errors,
    topKWeighted(3)(model, requests) AS top_models,
    round(sum(cost_usd), 6) AS cost_usd
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
GROUP BY decision
ORDER BY sum(requests) DESC, decision
SETTINGS prefer_column_name_to_alias = 1
