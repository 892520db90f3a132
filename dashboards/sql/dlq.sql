-- dlq: dead letters by topic, stage and reason, with an example
SELECT topic, stage, error_type, count() AS messages, max(failed_at) AS last_at,
       any(error) AS example
FROM dead_letters FINAL
WHERE $__timeFilter(failed_at)
GROUP BY topic, stage, error_type
ORDER BY messages DESC, topic, stage
SETTINGS prefer_column_name_to_alias = 1
