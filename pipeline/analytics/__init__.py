"""Analytics: ClickHouse schema, the idempotent sink, named queries and their rendering."""
