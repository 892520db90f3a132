"""analytics stage: the ClickHouse sink for responses, feedback, dead letters, pool-state samples,
router-state versions and cached answers (the last two are also the snapshots that re-seed their
topics after a restart of the embedded broker, see :mod:`pipeline.analytics.restore`).

Each flush (``WRP_SINK_BATCH_ROWS`` records or ``WRP_SINK_FLUSH_MS``, whichever first) inserts
one block per table with an ``insert_deduplication_token`` derived from the records' topic,
partition, offset and Kafka timestamp (offsets alone repeat once the embedded broker restarts
them at 0, and ClickHouse would drop the new block as a duplicate of an old one), and
the runner commits the offsets only after ClickHouse acknowledged every block. While ClickHouse is
down the runner keeps the batch, pauses consumption and retries with backoff, so memory stays
bounded by one batch and nothing is lost. A replay (a crash between insert and commit, or a
rebalance) never counts twice: an identical block is dropped by ClickHouse, raw tables are
ReplacingMergeTree read with FINAL, and requests already stored are skipped before insert so the
minutely rollups (fed by a materialized view) see each request once.

On the embedded stack this process owns the chdb directory, so it also serves the named
queries on its health port: ``GET /queries/{name}``, with a bearer token: the operator's for
everything, a tenant's API key for its own rows only (:mod:`pipeline.analytics.readers`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from pipeline.analytics import rows
from pipeline.analytics.queries import QUERIES
from pipeline.analytics.readers import (
    Readers,
    issue_operator_token,
    withdraw_operator_token,
)
from pipeline.analytics.store import AnalyticsStore, QueryError, batch_token
from pipeline.api_keys import ApiKeys
from pipeline.bus.catalog import CACHE, DLQ, FEEDBACK, POOL_STATE, RESPONSES, ROUTER_STATE
from pipeline.bus.stage import Inbound, Output, Stage
from pipeline.envelope import Envelope

#: topic -> (table, columns, rows of one message)
SINKS: dict[str, tuple[str, list[str], Callable[[Any], list[list[Any]]]]] = {
    RESPONSES: ("requests", rows.REQUEST_COLUMNS, lambda env: [rows.request_row(env)]),
    FEEDBACK: ("feedback", rows.FEEDBACK_COLUMNS, lambda f: [rows.feedback_row(f)]),
    DLQ: ("dead_letters", rows.DEAD_LETTER_COLUMNS, lambda d: [rows.dead_letter_row(d)]),
    POOL_STATE: ("pool_states", rows.POOL_STATE_COLUMNS, lambda p: [rows.pool_state_row(p)]),
    ROUTER_STATE: (
        "router_states",
        rows.ROUTER_STATE_COLUMNS,
        lambda r: [rows.router_state_row(r)],
    ),
    CACHE: ("cache_entries", rows.CACHE_ENTRY_COLUMNS, rows.cache_entry_rows),
}


class AnalyticsStage(Stage):
    name = "analytics"
    topics = tuple(SINKS)
    request_path = False
    # nobody waits on the sink: it fetches about once a second, up to a megabyte at a time
    fetch_busy_ms = fetch_idle_ms = 1000
    fetch_min_bytes = 1_000_000

    store: AnalyticsStore

    def batch_limits(self) -> tuple[int, int]:
        return self.settings.sink_batch_rows, self.settings.sink_flush_ms

    async def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.readers = Readers(
            issue_operator_token(self.settings), ApiKeys.from_settings(self.settings)
        )
        self.store = AnalyticsStore.from_settings(self.settings)

    async def stop(self) -> None:
        withdraw_operator_token(self.settings)
        self.store.close()

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/queries/{name}")
        async def named_query(name: str, request: Request) -> dict:
            if not hasattr(self, "store"):
                raise HTTPException(503, "the analytics store is still opening")
            reader = self.readers.reader(request.headers.get("authorization"))
            if reader is None:
                raise HTTPException(
                    401,
                    "send `Authorization: Bearer <token>`: the operator's (WRP_ANALYTICS_TOKEN) "
                    "or a tenant's API key",
                    headers={"www-authenticate": "Bearer"},
                )
            params = dict(request.query_params)
            if reader.tenant is not None:
                query = QUERIES.get(name)
                if query is not None and query.operator_only:
                    raise HTTPException(403, f"query {name!r} exports requests: operators only")
                if query is not None and not query.per_tenant:
                    raise HTTPException(403, f"query {name!r} spans tenants: operators only")
                params["tenant"] = reader.tenant
            try:
                return await self.store.run(self.store.query, name, params)
            except QueryError as exc:
                raise HTTPException(400, str(exc)) from None

    async def process(self, batch: list[Inbound]) -> list[Output]:
        """Insert every table's block; ``requests`` last, as the only one whose replay is
        filtered (by request id), so a batch that failed half way is completed on retry."""
        responses = [i for i in batch if i.topic == RESPONSES]
        for topic, (table, columns, to_rows) in SINKS.items():
            if topic != RESPONSES:
                items = [i for i in batch if i.topic == topic]
                await self.insert(table, columns, items, to_rows)
        if not responses:
            return []
        await self.insert("dispatch_attempts", rows.ATTEMPT_COLUMNS, responses, rows.attempt_rows)
        stored = await self.store.run(
            self.store.stored_request_ids, [i.message.request.request_id for i in responses]
        )
        table, columns, to_rows = SINKS[RESPONSES]
        await self.insert(table, columns, new_requests(responses, stored), to_rows)
        return []

    async def insert(
        self,
        table: str,
        columns: list[str],
        items: list[Inbound],
        to_rows: Callable[[Any], list[list[Any]]],
    ) -> None:
        if not items:
            return
        token = batch_token(table, [record_identity(i) for i in items])
        table_rows = [row for item in items for row in to_rows(item.message)]
        await self.store.run(self.store.insert, table, columns, table_rows, token)


def record_identity(item: Inbound) -> str:
    """Names one record of one incarnation of its topic: the offset and its Kafka timestamp."""
    return f"{item.topic}/{item.partition}/{item.offset}/{item.timestamp}"


def new_requests(items: list[Inbound], stored: set[str]) -> list[Inbound]:
    """The responses to insert: the last one per request id, none for requests already stored
    (a replay after a crash, or a stage that answered twice)."""
    latest: dict[str, Inbound] = {}
    for item in items:
        envelope: Envelope = item.message
        if envelope.request.request_id not in stored:
            latest[envelope.request.request_id] = item
    return list(latest.values())
