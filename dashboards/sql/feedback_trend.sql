-- feedback_trend: mean feedback score over time
SELECT $__timeInterval(created_at) AS time, round(avg(score), 3) AS mean_score,
       count() AS feedback
FROM feedback FINAL
WHERE $__timeFilter(created_at)
GROUP BY time
ORDER BY time
SETTINGS prefer_column_name_to_alias = 1
