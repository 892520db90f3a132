-- session_switches: sticky sessions per day and tenant: sessions, routed turns, model switches (per session, sessions with one), turns the router held on the session's model over the strategy's choice, follow-up turns that stayed on it
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
WHERE $__timeFilter(created_at) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND session_id != '' AND model != ''
    AND NOT cache_hit
GROUP BY day, tenant
ORDER BY day, tenant
SETTINGS prefer_column_name_to_alias = 1
