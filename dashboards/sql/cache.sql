-- cache: semantic cache per decision: hits, hit rate, cost saved (at the strongest candidate)
SELECT
    decision,
    sum(requests) AS requests,
    sum(cache_hits) AS cache_hits,
    round(100 * sum(cache_hits) / nullIf(sum(requests - blocked), 0), 1) AS hit_rate_pct,
    round(sum(cache_saved_usd), 6) AS saved_usd
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
GROUP BY decision
ORDER BY sum(cache_hits) DESC, decision
SETTINGS prefer_column_name_to_alias = 1
