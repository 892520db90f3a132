-- traffic: requests over time by decision and model
SELECT $__timeInterval(minute) AS time, decision, model, sum(requests) AS requests
FROM requests_minutely WHERE $__timeFilter(minute) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant)
GROUP BY time, decision, model
ORDER BY time, decision, model
SETTINGS prefer_column_name_to_alias = 1
