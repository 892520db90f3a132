-- learning: router-state per decision and model: latest version, evidence and success rate
SELECT
    decision,
    model,
    max(version) AS version,
    argMax(observations, version) AS observations,
    round(argMax(successes, version), 2) AS successes,
    round(argMax(failures, version), 2) AS failures,
    round(argMax(successes / nullIf(successes + failures, 0), version), 3) AS success_rate,
    max(updated_at) AS updated_at
FROM router_states FINAL
WHERE $__timeFilter(updated_at)
GROUP BY decision, model
ORDER BY decision, success_rate DESC, model
SETTINGS prefer_column_name_to_alias = 1
