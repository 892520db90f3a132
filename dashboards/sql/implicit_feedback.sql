-- implicit_feedback: implicit feedback (what users' next turns said about the previous answer) per day, tenant, decision and model: turns per label and the mean reward (0-1) they gave
SELECT
    toDate(f.created_at) AS day,
    r.tenant AS tenant,
    r.decision AS decision,
    r.model AS model,
    count() AS judged,
    countIf(f.implicit = 'moved_on') AS moved_on,
    countIf(f.implicit = 'says_wrong') AS says_wrong,
    countIf(f.implicit = 'clarify') AS clarify,
    countIf(f.implicit = 're_ask') AS re_ask,
    round(avg(f.score), 3) AS mean_reward
FROM feedback AS f FINAL
INNER JOIN (SELECT request_id, tenant, decision, model FROM requests FINAL) AS r
    ON r.request_id = f.request_id
WHERE $__timeFilter(f.created_at) AND f.implicit != ''
    AND $__conditionalAll(r.tenant IN (${tenant:singlequote}), $tenant)
GROUP BY day, r.tenant, r.decision, r.model
ORDER BY day DESC, judged DESC, r.tenant, r.decision, r.model
SETTINGS prefer_column_name_to_alias = 1
