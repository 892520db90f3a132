"""The analytics store: a clickhouse-connect client (chdb:// embedded or http(s):// server)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import clickhouse_connect

from pipeline.analytics.migrations import migrate
from pipeline.analytics.queries import QUERIES


class QueryError(ValueError):
    pass


class AnalyticsStore:
    """Idempotent inserts and named queries, serialised on one client."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.client = clickhouse_connect.get_client(dsn=dsn)
        self._lock = asyncio.Lock()
        self.migrated = migrate(self.client)

    def insert(self, table: str, columns: list[str], rows: list[list[Any]], token: str) -> None:
        """Insert ``rows``; a repeat of the same ``token`` is dropped by ClickHouse."""
        if rows:
            self.client.insert(
                table,
                rows,
                column_names=columns,
                settings={"insert_deduplication_token": token},
            )

    def query(self, name: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a named query; returns ``{"columns": [...], "rows": [[...], ...]}``."""
        if name not in QUERIES:
            raise QueryError(f"unknown query {name!r}; known: {', '.join(QUERIES)}")
        query = QUERIES[name]
        params = params or {}
        missing = [p for p in query.params if p not in params]
        if missing:
            raise QueryError(f"query {name!r} needs parameter(s) {', '.join(missing)}")
        result = self.client.query(query.sql, parameters={p: params[p] for p in query.params})
        return {"columns": list(result.column_names), "rows": [list(r) for r in result.result_rows]}

    async def run(self, fn, *args):
        """Run a blocking store call off the event loop, one at a time."""
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    def close(self) -> None:
        self.client.close()


def batch_token(table: str, keys: list[str]) -> str:
    return hashlib.sha256(f"{table}\n".encode() + "\n".join(keys).encode()).hexdigest()
