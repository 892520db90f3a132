-- answer_screening: screening the answer per tenant and day: answers screened, redacted, flagged, blocked, PII values redacted, attacks complied with, and what fired
WITH sumMap(answer_triggers, arrayMap(t -> toUInt64(1), answer_triggers)) AS by_reason
SELECT
    toDate(created_at) AS day,
    tenant,
    count() AS answers_screened,
    countIf(answer_action = 'redact') AS redacted,
    countIf(answer_action = 'flag') AS flagged,
    countIf(answer_action = 'block') AS blocked,
    sum(answer_redacted) AS values_redacted,
    countIf(answer_attack_complied) AS attack_complied,
    arrayStringConcat(
        arrayMap((t, n) -> concat(t, ' ', toString(n)), by_reason.1, by_reason.2), ', '
    ) AS reasons
FROM requests FINAL
WHERE $__timeFilter(created_at) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND answer_action != ''
GROUP BY day, tenant
ORDER BY day, tenant
SETTINGS prefer_column_name_to_alias = 1
