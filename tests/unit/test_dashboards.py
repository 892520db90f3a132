"""Grafana dashboards: generated from the named queries, and every panel's SQL runs on the real
ClickHouse engine (chdb) with the plugin's macros expanded as Grafana would."""

import json
import re
import time

import clickhouse_connect
import pytest

from pipeline.analytics.dashboards import DASHBOARDS, DASHBOARDS_DIR, PLUGIN, rendered_files
from pipeline.analytics.migrations import migrate


def expand(sql: str, tenants: list[str] | None) -> str:
    """What the ClickHouse datasource sends for the last hour and a tenant selection (None:
    All)."""
    now = int(time.time())
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        rf"\1 >= toDateTime({now - 3600}) AND \1 <= toDateTime({now})",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\(([^)]+)\)",
        r"toStartOfInterval(toDateTime(\1), INTERVAL 60 second)",
        sql,
    )
    quoted = ",".join(f"'{t}'" for t in tenants or [])
    sql = re.sub(
        r"\$__conditionalAll\((.+?), \$tenant\)",
        lambda m: "1=1" if tenants is None else m.group(1).replace("${tenant:singlequote}", quoted),
        sql,
    )
    assert "$" not in sql, sql
    return sql


def test_the_committed_dashboards_match_the_named_queries():
    rendered = rendered_files()
    on_disk = {p for p in DASHBOARDS_DIR.rglob("*") if p.is_file()}
    assert on_disk == set(rendered), "run `make schemas` (wrp dashboards) and commit the result"
    stale = [p.name for p, text in rendered.items() if p.read_text() != text]
    assert not stale, f"dashboards drifted from the queries: {stale}; run `wrp dashboards`"


def test_every_dashboard_has_a_datasource_variable_and_time_filtered_panels():
    for name in DASHBOARDS:
        board = json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == PLUGIN
        assert variables["tenant"]["includeAll"]
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            assert "$__timeFilter(" in panel["targets"][0]["rawSql"], panel["title"]


@pytest.mark.parametrize("tenants", [None, ["acme", "beta"]], ids=["all", "selected"])
def test_every_panel_query_runs_on_the_engine_with_the_macros_expanded(tmp_path, tenants):
    client = clickhouse_connect.get_client(dsn=f"chdb:///{tmp_path / 'ch'}")
    try:
        migrate(client)
        for name in DASHBOARDS:
            board = json.loads((DASHBOARDS_DIR / f"{name}.json").read_text())
            for panel in board["panels"]:
                sql = expand(panel["targets"][0]["rawSql"], tenants)
                client.query(sql)  # raises on any SQL the engine rejects
    finally:
        client.close()
