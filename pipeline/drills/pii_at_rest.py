"""The PII-at-rest drill: requests carrying raw PII sent down every path (answered with the PII
redacted, answered with an address the policy allows, blocked, failed, dead-lettered as broken
JSON and as a schema error, a feedback comment, a reply topic of the client's own, an answer that
carries the PII itself: the simulator's ``sim_answer``), then every
string column of every ClickHouse table (as text and base64-decoded), every log file and the
HTML report searched for the raw values."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from pipeline.analytics.access import query_analytics
from pipeline.analytics.report import build_report
from pipeline.analytics.store import AnalyticsStore
from pipeline.bus.catalog import REQUESTS
from pipeline.bus.clients import new_producer
from pipeline.client import ResponseCollector, send_feedback
from pipeline.drills.observe import delta, quiet_totals, settle, totals
from pipeline.envelope import ChatRequest, Envelope, Feedback, RequestSection
from pipeline.stack import Stack

#: The raw values planted: each is searched for as it is.
PII = {
    "EMAIL_ADDRESS": "drill.person@example.net",
    "PHONE_NUMBER": "(415) 555-0199",
    "CREDIT_CARD": "4012 8888 8888 1881",
    "US_SSN": "078-05-1120",
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",
    "IP_ADDRESS": "203.0.113.77",
    "SECRET": "sk-proj-Zq8xV3mT9rW2pL6nB4cD7fG1hJ5kM0sQ",
}
TEXT = (
    f"Please update my account: email {PII['EMAIL_ADDRESS']}, phone {PII['PHONE_NUMBER']}, "
    f"card {PII['CREDIT_CARD']}, SSN {PII['US_SSN']}, IBAN {PII['IBAN_CODE']}, "
    f"last login from {PII['IP_ADDRESS']}."
)


def _paths(run: str) -> dict[str, bytes]:
    """One raw record per path, keyed by its request id."""

    def envelope(rid: str, text: str, **body) -> bytes:
        chat = ChatRequest(messages=[{"role": "user", "content": text}], **body)
        return (
            Envelope(request=RequestSection(request_id=rid, tenant="pii", body=chat))
            .model_dump_json()
            .encode()
        )

    redacted = envelope(f"pii-{run}-redacted", TEXT)
    whole = envelope(f"pii-{run}-truncated", TEXT)
    wrong = json.loads(envelope(f"pii-{run}-schema", TEXT))
    wrong["request"]["body"]["temperature"] = f"hot, like {PII['EMAIL_ADDRESS']}"
    return {
        f"pii-{run}-redacted": redacted,
        f"pii-{run}-allowed": envelope(f"pii-{run}-allowed", f"Ping {PII['IP_ADDRESS']} please"),
        f"pii-{run}-blocked": envelope(f"pii-{run}-blocked", f"{TEXT} My key: {PII['SECRET']}"),
        f"pii-{run}-error": envelope(f"pii-{run}-error", TEXT, model="no-such-model"),
        f"pii-{run}-truncated": whole[: whole.index(b"last login") + 20],
        f"pii-{run}-schema": json.dumps(wrong).encode(),
        f"pii-{run}-answer": envelope(f"pii-{run}-answer", "Read my details back", sim_answer=TEXT),
    }


async def _send(stack: Stack, run: str) -> dict[str, Envelope]:
    bootstrap = stack.settings.broker
    records = _paths(run)
    collector = ResponseCollector(bootstrap)
    await collector.start()
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for rid, raw in records.items():
            await producer.send_and_wait(REQUESTS, raw, key=rid.encode())
        answers = await collector.wait_for(records, 120)
        judged = Feedback(request_id=f"pii-{run}-redacted", score=0.0, source="drill", comment=TEXT)
        await send_feedback(producer, judged)
        return answers
    finally:
        await producer.stop()
        await collector.stop()


def scan_store(
    store: AnalyticsStore, values: dict[str, str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``table.column`` -> the planted entities found in it, over every string column of every
    table, as stored and base64-decoded; and for each hit the text around its first occurrence
    (the value itself masked), to tell where it came from."""
    client = store.client
    columns = client.query(
        "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
        "AND type LIKE '%String%' AND table IN (SELECT name FROM system.tables WHERE "
        "database = currentDatabase() AND engine NOT LIKE '%View%')"
    ).result_rows
    found: dict[str, list[str]] = {}
    context: dict[str, str] = {}
    for table, column, kind in columns:
        text = f"arrayStringConcat(`{column}`, '\\n')" if kind.startswith("Array") else column
        text = f"toString({text})"
        for entity, value in values.items():
            hits = client.query(
                f"SELECT count() FROM `{table}` WHERE position({text}, {{v:String}}) > 0 "
                f"OR position(tryBase64Decode({text}), {{v:String}}) > 0",
                parameters={"v": value},
            ).result_rows[0][0]
            if hits:
                found.setdefault(f"{table}.{column}", []).append(entity)
                where = client.query(
                    f"SELECT substring({text}, greatest(1, toInt64(position({text}, "
                    f"{{v:String}})) - 300), 600) FROM `{table}` WHERE position({text}, "
                    f"{{v:String}}) > 0 LIMIT 1",
                    parameters={"v": value},
                ).result_rows
                around = where[0][0] if where else "(base64-encoded)"
                context[f"{table}.{column}:{entity}"] = around.replace(value, f"[{entity}]")
    return found, context


def pii_drill(stack: Stack) -> dict:
    """Runs on a started stack and leaves it started (the analytics stage is restarted to let
    this process open the store)."""
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    before = asyncio.run(quiet_totals(stack))
    answers = asyncio.run(_send(stack, run))
    outcomes = {rid.rsplit("-", 1)[1]: env.result.status for rid, env in answers.items()}

    def landed() -> bool:
        stored = delta(totals(stack), before)
        return (
            stored["requests"] >= len(answers)
            and stored["dead_letters"] >= 2
            and stored["feedback"] >= 1
        )

    asyncio.run(settle(landed, timeout_s=60))
    report_html = build_report(lambda name, params: query_analytics(stack.settings, name, params))
    stack.stop_process("analytics")
    store = AnalyticsStore.from_settings(stack.settings)
    try:
        in_store, where = scan_store(store, PII)
    finally:
        store.close()
    stack.spawn("analytics", ["stage", "analytics"])
    stack.wait_healthy(("analytics",), simulators=False)
    in_logs = {
        path.name: [e for e, value in PII.items() if value in path.read_text(errors="replace")]
        for path in sorted(stack.log_dir.glob("*.log"))
    }
    in_report = [e for e, value in PII.items() if value in report_html]
    found = sum(len(v) for v in in_store.values()) + sum(len(v) for v in in_logs.values())
    report = {
        "paths": outcomes,
        "values_planted": len(PII),
        "found_in_clickhouse": in_store,
        "found_in_clickhouse_around": where,
        "found_in_logs": {name: hits for name, hits in in_logs.items() if hits},
        "found_in_report": in_report,
        "pii_values_found_at_rest": found + len(in_report),
        "seconds": round(time.monotonic() - started, 1),
    }
    report["passed"] = report["pii_values_found_at_rest"] == 0 and len(answers) == 7
    return report
