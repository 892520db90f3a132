"""Schema migrations on the real ClickHouse engine (chdb) in a temporary folder."""

import clickhouse_connect

from pipeline.analytics.migrations import (
    MIGRATIONS,
    Backfill,
    Rebuild,
    applied_versions,
    migrate,
)


def columns(client, table: str) -> set[str]:
    return {row[0] for row in client.query(f"DESCRIBE TABLE {table}").result_rows}


def sorting_key(client, table: str) -> str:
    return client.query(
        f"SELECT sorting_key FROM system.tables WHERE database = currentDatabase() "
        f"AND name = '{table}'"
    ).result_rows[0][0]


def run(client, migration) -> None:
    for statement in migration.statements:
        if isinstance(statement, Rebuild | Backfill):
            statement.apply(client)
        else:
            client.command(statement)


def test_migrations_apply_once_in_order_and_upgrade_an_older_schema(tmp_path):
    client = clickhouse_connect.get_client(dsn=f"chdb:///{tmp_path / 'analytics'}")
    try:
        # a store from before the pool columns existed, holding one request: version 1 only
        first = MIGRATIONS[0]
        applied_versions(client)
        run(client, first)
        client.command(f"INSERT INTO schema_migrations (version, name) VALUES (1, '{first.name}')")
        client.command(
            "INSERT INTO requests (request_id, tenant, created_at, status, decision, model) "
            "VALUES ('r1', 'acme', now64(3), 'ok', 'code', 'big')"
        )
        assert "ttft_ms" not in columns(client, "requests")
        assert sorting_key(client, "requests") == "request_id"

        applied = migrate(client)
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS[1:]]
        assert {"ttft_ms", "gpu_cost_usd", "baseline_cost_usd"} <= columns(client, "requests")
        # the rebuild moved the row into the tenant-first layout
        assert sorting_key(client, "requests") == "tenant, toDate(created_at), request_id"
        rows = client.query("SELECT request_id, tenant, model FROM requests").result_rows
        assert rows == [("r1", "acme", "big")]
        rolled = "SELECT tenant, decision, sum(requests) FROM requests_minutely GROUP BY ALL"
        assert client.query(rolled).result_rows == [("acme", "code", 1)]  # backfilled
        tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
        assert {"dispatch_attempts", "pool_states", "router_states", "requests_minutely"} <= tables
        assert "outcomes" not in tables and "requests__rebuild" not in tables

        assert migrate(client) == []  # idempotent: nothing left to apply
        assert applied_versions(client) == {m.version for m in MIGRATIONS}
        # every step may run twice (a migration interrupted half way is applied again)
        for migration in MIGRATIONS[2:]:
            run(client, migration)
        assert client.query("SELECT count() FROM requests").result_rows == [(1,)]
        assert client.query(rolled).result_rows == [("acme", "code", 1)]
    finally:
        client.close()
