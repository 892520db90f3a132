"""Re-seeding what must survive a restart of the embedded broker.

The embedded broker keeps its topics in memory, so a restart empties ``wrp.router-state`` (what
the learner learned) and ``wrp.cache`` (the semantic cache). The analytics store keeps snapshots
of both: ``router_states`` holds every version of every arm, ``cache_entries`` every cached answer
without PII. :func:`restore_topics` (``wrp analytics restore``, which the embedded stack runs
before its stages start) publishes the latest version of each arm and the answers that have not
expired back, and only to a topic that came back empty: on a durable Kafka it does nothing.
The learner then folds new evidence onto the restored arms (:mod:`pipeline.stages.learner`), and
every router tails both topics as usual. ``wrp.usage`` (what budgets count) is re-seeded the
same way, from the stored requests of each budget's current window, as one record per scope in
partition :data:`~pipeline.learn.usage.RESTORED` that routers add to what the learner counts anew.
"""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from pipeline.analytics import rows
from pipeline.analytics.store import AnalyticsStore
from pipeline.bus.catalog import CACHE, ROUTER_STATE, USAGE
from pipeline.bus.clients import new_consumer, new_producer
from pipeline.bus.codec import encode
from pipeline.envelope import Usage
from pipeline.learn.usage import RESTORED, window_start
from pipeline.policy import Budget, load_policy
from pipeline.router.cache_entries import topic_key
from pipeline.settings import Settings

LATEST_ARMS = """
SELECT * FROM router_states FINAL
ORDER BY decision, model, version DESC
LIMIT 1 BY decision, model"""
LIVE_ANSWERS = "SELECT * FROM cache_entries FINAL WHERE expires_at > now64(3)"


async def topic_is_empty(bootstrap: str, topic: str) -> bool:
    consumer = new_consumer(bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return True
        first = await consumer.beginning_offsets(partitions)
        last = await consumer.end_offsets(partitions)
        return all(first[tp] >= last[tp] for tp in partitions)
    finally:
        await consumer.stop()


#: Whom each budget scope counts, as a column expression of ``requests``.
SCOPE_COLUMNS = {
    "tenant": "tenant",
    "api_key": "api_key",
    "session": "if(session_id = '', '', concat(tenant, '/', session_id))",
}


def usage_sql(budget: Budget, start: float) -> str:
    """Usage of every scope ``budget`` counts since ``start``, from the stored requests that
    reached a model (the tokens and USD of answers a model gave, as the learner counts)."""
    tenants = ", ".join(f"'{t}'" for t in budget.tenants)  # names are [A-Za-z0-9._:@-]
    return f"""
SELECT who, count() AS requests,
    sumIf(prompt_tokens + completion_tokens, status = 'ok' AND NOT cache_hit) AS tokens,
    sum(cost_usd) AS usd
FROM (SELECT *, {SCOPE_COLUMNS[budget.scope]} AS who FROM requests FINAL
      WHERE created_at >= fromUnixTimestamp64Milli({int(start * 1000)}) AND pool != ''
      {f"AND tenant IN ({tenants})" if tenants else ""})
WHERE who != ''
GROUP BY who"""


def restored_usage(store: AnalyticsStore, budgets: list[Budget], at: float) -> list[Usage]:
    """One record per (scope, who, window) the budgets count, in the window holding ``at``."""
    found: dict[str, Usage] = {}
    for budget in budgets:
        start = window_start(budget.window, at)
        for row in _records(store, usage_sql(budget, start)):
            usage = Usage(
                scope=budget.scope,
                who=row["who"],
                window=budget.window,
                start=start,
                partition=RESTORED,
                requests=int(row["requests"]),
                tokens=int(row["tokens"]),
                usd=round(float(row["usd"]), 8),
                updated_at=at,
            )
            found.setdefault(usage.key, usage)  # budgets sharing a scope and window agree
    return list(found.values())


def _records(store: AnalyticsStore, sql: str) -> list[dict]:
    result = store.client.query(sql)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


async def restore_topics(settings: Settings) -> dict[str, int]:
    """Records published per topic; a topic that was not empty is left alone (0)."""
    store = AnalyticsStore.from_settings(settings)
    try:
        wanted = {
            ROUTER_STATE: [rows.router_state_from_row(r) for r in _records(store, LATEST_ARMS)],
            CACHE: [rows.cache_entry_from_row(r) for r in _records(store, LIVE_ANSWERS)],
            USAGE: restored_usage(store, load_policy(settings.policy).budgets, time.time()),
        }
    finally:
        store.close()
    keys = {ROUTER_STATE: lambda state: state.key, CACHE: topic_key, USAGE: lambda u: u.key}
    published: dict[str, int] = {}
    producer = new_producer(settings.broker, linger_ms=5)
    await producer.start()
    try:
        for topic, messages in wanted.items():
            published[topic] = 0
            if not messages or not await topic_is_empty(settings.broker, topic):
                continue
            for message in messages:
                key = keys[topic](message).encode()
                await producer.send(topic, encode(message), key=key)
            await producer.flush()
            published[topic] = len(messages)
    finally:
        await producer.stop()
    return published
