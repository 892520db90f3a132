-- tool_savings: tool selection per tenant and day: requests with tools, how many were narrowed, tools offered and kept, tool tokens offered and saved
SELECT
    tenant,
    toDate(created_at) AS day,
    count() AS requests_with_tools,
    countIf(tools_kept < tools_offered) AS narrowed,
    sum(tools_offered) AS tools_offered,
    sum(tools_kept) AS tools_kept,
    sum(tool_tokens) AS tool_tokens,
    sum(tool_tokens_saved) AS tool_tokens_saved,
    round(100 * sum(tool_tokens_saved) / nullIf(sum(tool_tokens), 0), 1) AS saved_pct
FROM requests FINAL
WHERE $__timeFilter(created_at) AND $__conditionalAll(tenant IN (${tenant:singlequote}), $tenant) AND tools_offered > 0
GROUP BY tenant, day
ORDER BY day, tenant
SETTINGS prefer_column_name_to_alias = 1
