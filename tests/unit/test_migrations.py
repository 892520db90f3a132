"""Schema migrations on the real ClickHouse engine (chdb) in a temporary folder."""

import clickhouse_connect

from pipeline.analytics.migrations import MIGRATIONS, applied_versions, migrate


def columns(client, table: str) -> set[str]:
    return {row[0] for row in client.query(f"DESCRIBE TABLE {table}").result_rows}


def test_migrations_apply_once_in_order_and_upgrade_an_older_schema(tmp_path):
    client = clickhouse_connect.get_client(dsn=f"chdb:///{tmp_path / 'analytics'}")
    try:
        # a store created before the pool columns existed: version 1 only
        first = MIGRATIONS[0]
        applied_versions(client)
        for statement in first.statements:
            client.command(statement)
        client.command(f"INSERT INTO schema_migrations (version, name) VALUES (1, '{first.name}')")
        assert "ttft_ms" not in columns(client, "outcomes")

        applied = migrate(client)
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS[1:]]
        assert {"ttft_ms", "gpu_cost_usd", "energy_j", "fallback_from"} <= columns(
            client, "requests"
        ) & columns(client, "outcomes")
        assert migrate(client) == []  # idempotent: nothing left to apply
        assert applied_versions(client) == {m.version for m in MIGRATIONS}
        # every statement may run twice (a migration interrupted half way is applied again)
        for migration in MIGRATIONS:
            for statement in migration.statements:
                client.command(statement)
    finally:
        client.close()
