-- feedback: feedback by decision and model: count, mean score (0-1), positive and negative
SELECT
    r.decision AS decision,
    r.model AS model,
    count() AS feedback,
    round(avg(f.score), 3) AS mean_score,
    countIf(f.score >= 0.5) AS positive,
    countIf(f.score < 0.5) AS negative,
    topK(3)(f.source) AS sources
FROM feedback AS f FINAL
INNER JOIN (SELECT request_id, tenant, decision, model FROM requests FINAL) AS r
    ON r.request_id = f.request_id
WHERE $__timeFilter(f.created_at) AND $__conditionalAll(r.tenant IN (${tenant:singlequote}), $tenant)
GROUP BY decision, model
ORDER BY feedback DESC, decision, model
SETTINGS prefer_column_name_to_alias = 1
