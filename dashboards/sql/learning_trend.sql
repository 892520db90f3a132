-- learning_trend: learner success rate per arm over time
SELECT
    $__timeInterval(updated_at) AS time,
    concat(decision, ' / ', model) AS arm,
    round(argMax(successes / nullIf(successes + failures, 0), version), 3) AS success_rate
FROM router_states FINAL
WHERE $__timeFilter(updated_at)
GROUP BY time, arm
ORDER BY time, arm
SETTINGS prefer_column_name_to_alias = 1
