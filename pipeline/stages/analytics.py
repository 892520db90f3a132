"""analytics stage: responses, outcomes, feedback and dead letters -> ClickHouse, idempotently.

On the embedded stack this process owns the chdb directory, so it also serves the named
queries on its health port: ``GET /queries/{name}``.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request

from pipeline.analytics import rows
from pipeline.analytics.store import AnalyticsStore, QueryError, batch_token
from pipeline.bus.catalog import DLQ, FEEDBACK, OUTCOMES, RESPONSES
from pipeline.bus.runner import Inbound, Outbound, Rejected, Stage

TABLE_OF_TOPIC = {
    RESPONSES: ("requests", rows.REQUEST_COLUMNS, rows.request_row),
    OUTCOMES: ("outcomes", rows.OUTCOME_COLUMNS, rows.outcome_row),
    FEEDBACK: ("feedback", rows.FEEDBACK_COLUMNS, rows.feedback_row),
    DLQ: ("dead_letters", rows.DEAD_LETTER_COLUMNS, rows.dead_letter_row),
}


class AnalyticsStage(Stage):
    name = "analytics"
    topics = (RESPONSES, OUTCOMES, FEEDBACK, DLQ)

    store: AnalyticsStore

    async def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = AnalyticsStore(self.settings.clickhouse_dsn)

    async def stop(self) -> None:
        self.store.close()

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/queries/{name}")
        async def named_query(name: str, request: Request) -> dict:
            if not hasattr(self, "store"):
                raise HTTPException(503, "the analytics store is still opening")
            try:
                return await self.store.run(self.store.query, name, dict(request.query_params))
            except QueryError as exc:
                raise HTTPException(404, str(exc)) from None

    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        for topic, (table, columns, to_row) in TABLE_OF_TOPIC.items():
            items = [item for item in batch if item.topic == topic]
            if not items:
                continue
            keys = [f"{i.topic}/{i.partition}/{i.offset}" for i in items]
            table_rows = [to_row(item.message) for item in items]
            await self.store.run(
                self.store.insert, table, columns, table_rows, batch_token(table, keys)
            )
        return []
