"""The analytics store: a clickhouse-connect client (chdb:// embedded or http(s):// server)."""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import clickhouse_connect

from pipeline.analytics.migrations import migrate
from pipeline.analytics.queries import QUERIES, QueryError, bind
from pipeline.settings import Settings

#: Insert settings: a repeated ``insert_deduplication_token`` is dropped by the table and by the
#: materialized views it feeds (the rollups), so a replayed batch never counts twice.
DEDUP_INSERT = {"deduplicate_blocks_in_dependent_materialized_views": 1}


class AnalyticsStore:
    """Idempotent inserts and named queries, serialised on one client."""

    def __init__(self, dsn: str, database: str = "", **options: Any) -> None:
        self.dsn = dsn
        if database:
            bootstrap = clickhouse_connect.get_client(dsn=dsn, **options)
            try:
                bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            finally:
                bootstrap.close()
            options["database"] = database
        self.client = clickhouse_connect.get_client(dsn=dsn, **options)
        self._lock = asyncio.Lock()
        self.migrated = migrate(self.client)

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalyticsStore:
        embedded = settings.clickhouse_dsn.startswith("chdb:")
        database = "" if embedded else settings.clickhouse_database
        return cls(settings.clickhouse_dsn, database, **settings.clickhouse_options())

    def insert(self, table: str, columns: list[str], rows: list[list[Any]], token: str) -> None:
        """Insert ``rows``; a repeat of the same ``token`` is dropped by ClickHouse."""
        if rows:
            self.client.insert(
                table,
                rows,
                column_names=columns,
                settings={**DEDUP_INSERT, "insert_deduplication_token": token},
            )

    def stored_request_ids(self, request_ids: list[str]) -> set[str]:
        """Which of ``request_ids`` already have a row in ``requests``."""
        if not request_ids:
            return set()
        result = self.client.query(
            "SELECT DISTINCT request_id FROM requests WHERE request_id IN {ids:Array(String)}",
            parameters={"ids": request_ids},
        )
        return {row[0] for row in result.result_rows}

    def query(self, name: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a named query; returns ``{"columns": [...], "rows": [[...], ...]}``."""
        if name not in QUERIES:
            raise QueryError(f"unknown query {name!r}; known: {', '.join(QUERIES)}")
        sql, parameters = bind(QUERIES[name], params or {})
        result = self.client.query(sql, parameters=parameters)
        columns = list(result.column_names)
        if not columns:  # the embedded engine names no columns when no row came back
            described = self.client.query(f"DESCRIBE TABLE ({sql})", parameters=parameters)
            columns = [row[0] for row in described.result_rows]
        return {
            "columns": columns,
            "rows": [[_finite(v) for v in row] for row in result.result_rows],
        }

    async def run(self, fn, *args):
        """Run a blocking store call off the event loop, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        self.client.close()


def _finite(value: Any) -> Any:
    """NaN (a percentile of no rows) -> None, which JSON can carry."""
    return None if isinstance(value, float) and math.isnan(value) else value


def batch_token(table: str, keys: list[str]) -> str:
    return hashlib.sha256(f"{table}\n".encode() + "\n".join(keys).encode()).hexdigest()
