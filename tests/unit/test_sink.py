"""The analytics sink on the real ClickHouse engine (chdb): idempotent inserts, rollups that never
count a replay twice, and every named query."""

import asyncio
import base64
import time

import pytest

from pipeline.analytics import restore, rows
from pipeline.analytics.queries import QUERIES, QueryError
from pipeline.analytics.restore import LATEST_ARMS, LIVE_ANSWERS
from pipeline.bus.catalog import CACHE, DLQ, FEEDBACK, POOL_STATE, REQUESTS, RESPONSES, ROUTER_STATE
from pipeline.bus.stage import Inbound
from pipeline.envelope import (
    CacheEntry,
    ChatRequest,
    DeadLetter,
    Feedback,
    PoolState,
    Result,
    RouterState,
)
from pipeline.policy import Budget
from pipeline.settings import Settings
from pipeline.stages.analytics import AnalyticsStage
from tests.unit.factories import make_served


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    state = tmp_path_factory.mktemp("sink")
    stage = AnalyticsStage(Settings(state_dir=state, clickhouse=f"chdb:///{state / 'ch'}"))
    asyncio.run(stage.start())
    yield stage
    asyncio.run(stage.stop())


def responses(first_offset: int, *envelopes) -> list[Inbound]:
    return [Inbound(RESPONSES, 0, first_offset + i, b"", env) for i, env in enumerate(envelopes)]


def one(sink, name: str, **params) -> dict:
    result = sink.store.query(name, params)
    assert len(result["rows"]) == 1, result
    return dict(zip(result["columns"], result["rows"][0], strict=True))


def table(sink, name: str, **params) -> list[dict]:
    result = sink.store.query(name, params)
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def test_the_same_block_inserted_twice_counts_once_in_the_table_and_its_rollup(sink):
    batch = responses(0, make_served("dup-1", tenant="twice"), make_served("dup-2", tenant="twice"))
    for _ in range(2):  # what a replay after a crash between insert and commit does
        asyncio.run(
            sink.insert("requests", rows.REQUEST_COLUMNS, batch, lambda e: [rows.request_row(e)])
        )
    raw = sink.store.client.query("SELECT count() FROM requests WHERE tenant = 'twice'")
    rolled = sink.store.client.query(
        "SELECT sum(requests) FROM requests_minutely WHERE tenant = 'twice'"
    )
    assert raw.result_rows == [(2,)] and rolled.result_rows == [(2,)]


def test_a_replay_cut_at_other_offsets_counts_each_request_once(sink):
    envs = [make_served(f"cut-{i}", tenant="replay", failed_attempts=i % 2) for i in range(5)]
    asyncio.run(sink.process(responses(0, *envs[:3])))
    # redelivered from offset 1 with more records behind: a different block, same requests
    asyncio.run(sink.process(responses(1, *envs[1:])))
    summary = one(sink, "summary", tenant="replay")
    assert summary["requests"] == 5 and summary["ok"] == 5
    attempts = sink.store.client.query(
        "SELECT count() FROM dispatch_attempts FINAL WHERE tenant = 'replay'"
    ).result_rows
    assert attempts == [(5 + 2,)]  # one ok call each, and cut-1 and cut-3 failed once first


def test_named_queries_filter_by_tenant_and_time_and_compute_savings(sink):
    now = time.time()
    served = [
        make_served("q-1", tenant="alpha", cost=0.001, baseline=0.004, at=now),
        make_served("q-2", tenant="alpha", cost=0.003, baseline=0.004, at=now),
        make_served("q-3", tenant="alpha", cache_hit=True, baseline=0.002, at=now),
        make_served("q-old", tenant="alpha", at=now - 3 * 86400),
        make_served("q-4", tenant="beta", model="small", pool="cpu", at=now),
    ]
    asyncio.run(sink.process(responses(100, *served)))
    alpha = one(sink, "summary", tenant="alpha", since="1h")
    assert alpha["requests"] == 3 and alpha["cache_hits"] == 1
    assert alpha["cost_usd"] == pytest.approx(0.004)
    assert alpha["strongest_cost_usd"] == pytest.approx(0.010)
    assert alpha["savings_pct"] == pytest.approx(60.0)
    assert one(sink, "summary", tenant="alpha", since="7d")["requests"] == 4
    cache = table(sink, "cache", tenant="alpha", since="1h")
    assert [(c["decision"], c["cache_hits"], c["saved_usd"]) for c in cache] == [
        ("code", 1, pytest.approx(0.002))
    ]
    cost = table(sink, "cost", since="1h")
    assert {(c["tenant"], c["model"]) for c in cost} >= {("alpha", "big"), ("beta", "small")}
    with pytest.raises(QueryError, match="not per tenant"):
        sink.store.query("dlq", {"tenant": "alpha"})
    with pytest.raises(QueryError, match="duration"):
        sink.store.query("summary", {"since": "yesterday"})


def test_pool_state_samples_and_router_state_versions_land_and_are_queryable(sink):
    now = time.time()
    batch = [
        Inbound(
            POOL_STATE,
            0,
            7,
            b"",
            PoolState(
                pool="gpu",
                endpoint="e-ok",
                requests=3,
                errors=0,
                latency_ms_ewma=90.0,
                updated_at=now,
            ),
        ),
        *(
            Inbound(
                ROUTER_STATE,
                0,
                v,
                b"",
                RouterState(
                    decision="code",
                    model="big",
                    successes=v,
                    failures=1,
                    observations=v + 1,
                    version=v,
                    updated_at=now,
                ),
            )
            for v in (1, 2, 3)
        ),
    ]
    asyncio.run(sink.process(batch))
    asyncio.run(sink.process(batch))  # replayed: still one sample and three versions
    learning = table(sink, "learning", since="1h")
    assert [(r["decision"], r["model"], r["version"], r["success_rate"]) for r in learning] == [
        ("code", "big", 3, 0.75)
    ]
    totals = one(sink, "totals")
    assert totals["pool_samples"] == 1 and totals["router_versions"] == 3


def test_every_named_query_runs(sink):
    for name, query in QUERIES.items():
        params = {"request_id": "q-1"} if "request_id" in query.params else {}
        result = sink.store.query(name, params)
        assert result["columns"], name


def stamped(timestamp: int, *envelopes) -> list[Inbound]:
    """Responses at offsets 0.. with one Kafka timestamp: one incarnation of the topic."""
    return [Inbound(RESPONSES, 0, i, b"", env, timestamp) for i, env in enumerate(envelopes)]


def test_records_at_offsets_a_restarted_broker_reuses_are_stored_not_dropped(sink):
    before = [make_served(f"epoch-a-{i}", tenant="epochs") for i in range(2)]
    after = [make_served(f"epoch-b-{i}", tenant="epochs") for i in range(2)]
    asyncio.run(sink.process(stamped(1_700_000_000_000, *before)))
    # the broker restarted: offsets begin at 0 again, the records are new
    asyncio.run(sink.process(stamped(1_700_000_900_000, *after)))
    assert one(sink, "counted", tenant="epochs", since="100w") == {"stored": 4, "rolled_up": 4}


def test_no_raw_pii_is_stored_in_any_text_column(sink):
    email, card = "jane.roe@example.com", "4111 1111 1111 1111"
    served = make_served("pii-row", tenant="private")
    body = ChatRequest(messages=[{"role": "user", "content": f"mail {email}, card {card}"}])
    served = served.model_copy(update={"request": served.request.model_copy(update={"body": body})})
    blocked = served.model_copy(
        update={
            "request": served.request.model_copy(update={"request_id": "pii-blocked"}),
            "result": Result(status="blocked", stage="safety", response={"echo": email}),
        }
    )
    letter = DeadLetter(
        stage="signals",
        topic=REQUESTS,
        partition=0,
        offset=1,
        error_type="invalid_json",
        error=f"near {email}",
        raw=base64.b64encode(f'{{"content": "{card}"'.encode()).decode(),
    )
    comment = Feedback(request_id="pii-row", score=1.0, comment=f"call me: {email}")
    asyncio.run(
        sink.process(
            [
                *responses(100, served, blocked),
                Inbound(DLQ, 0, 1, b"", letter, 1),
                Inbound(FEEDBACK, 0, 1, b"", comment, 1),
            ]
        )
    )
    stored = sink.store.client.query(
        "SELECT envelope FROM requests FINAL WHERE tenant = 'private' "
        "UNION ALL SELECT concat(error, base64Decode(raw)) FROM dead_letters FINAL "
        "UNION ALL SELECT comment FROM feedback FINAL WHERE request_id = 'pii-row'"
    ).result_rows
    assert len(stored) >= 4
    text = "\n".join(row[0] for row in stored)
    assert email not in text and card not in text
    assert "<EMAIL_ADDRESS>" in text and "<CREDIT_CARD>" in text


def test_the_snapshots_hold_the_latest_arm_and_the_live_answers_without_pii(sink):
    now = time.time()
    arms = [
        RouterState(decision="snap", model="m", successes=s, failures=1, observations=s, version=s)
        for s in (1, 2)
    ]

    def answer(key: str, text: str, expires_at: float) -> CacheEntry:
        response = {"choices": [{"message": {"role": "assistant", "content": text}}]}
        return CacheEntry(
            tenant="snap", decision="d", params="p", key=key, model="m", response=response,
            stored_at=now, expires_at=expires_at,
        )  # fmt: skip

    entries = [
        answer("live", "forty-two", now + 600),
        answer("expired", "old news", now - 1),
        answer("private", "write to jane.roe@example.com", now + 600),
    ]
    batch = [Inbound(ROUTER_STATE, 0, i, b"", a, 1) for i, a in enumerate(arms)]
    batch += [Inbound(CACHE, 0, i, b"", e, 1) for i, e in enumerate(entries)]
    asyncio.run(sink.process(batch))
    latest = [rows.router_state_from_row(r) for r in restore._records(sink.store, LATEST_ARMS)]
    assert [(s.key, s.version) for s in latest if s.decision == "snap"] == [("snap/m", 2)]
    live = [rows.cache_entry_from_row(r) for r in restore._records(sink.store, LIVE_ANSWERS)]
    assert [(e.key, e.response) for e in live if e.tenant == "snap"] == [
        ("live", entries[0].response)
    ]


def test_usage_is_restored_per_budget_scope_from_the_stored_requests_of_the_window(sink):
    served = [make_served(f"use-{i}", tenant="metered", cost=0.002) for i in range(3)]
    served.append(make_served("use-cached", tenant="metered", cost=0.0, cache_hit=True))
    served.append(make_served("use-other", tenant="unmetered", cost=0.5))
    served[0].request.session_id = "s1"
    asyncio.run(sink.process(responses(900, *served)))
    budgets = [
        Budget(name=name, scope=scope, metric="usd", window=window, limit=1, tenants=["metered"])
        for name, scope, window in (
            ("spend", "tenant", "day"),
            ("per-session", "session", "month"),
            ("keys", "api_key", "minute"),
        )
    ]
    usage = {u.key: u for u in restore.restored_usage(sink.store, budgets, time.time())}
    tenant = usage["tenant/metered/day/-1"]
    out = served[0].outcome
    assert (tenant.requests, tenant.usd) == (4, 0.006)
    assert tenant.tokens == 3 * (out.prompt_tokens + out.completion_tokens)  # not the cached one
    assert usage["session/metered/s1/month/-1"].requests == 1
    assert set(usage) == {"tenant/metered/day/-1", "session/metered/s1/month/-1"}  # no keys
