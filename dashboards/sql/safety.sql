-- safety: safety actions (blocks, redactions), the learned detectors that fired (jailbreak, injection, harmful), PII entities and moderation categories
SELECT
    safety_action,
    arrayJoin(if(empty(pii_entities), [''], pii_entities)) AS pii_entity,
    arrayStringConcat(moderation_categories, ',') AS categories,
    arrayStringConcat(arrayFilter(t -> t IN ('jailbreak', 'injection', 'harmful'),
        safety_triggers), ',') AS detectors,
    count() AS requests,
    round(avg(jailbreak_score), 3) AS mean_jailbreak_score,
    round(avg(injection_score), 3) AS mean_injection_score,
    round(avg(harmful_score), 3) AS mean_harmful_score
FROM requests FINAL
WHERE $__timeFilter(created_at) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND safety_action != ''
GROUP BY safety_action, pii_entity, categories, detectors
ORDER BY requests DESC, safety_action
SETTINGS prefer_column_name_to_alias = 1
