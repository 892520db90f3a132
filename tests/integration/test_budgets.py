"""Budgets through the real pipeline: usage counted from outcomes by the learner into
``wrp.usage``, read by two router instances; a session over its token budget and a tenant over
its daily spend are stopped at the first request after the limit was reached; a kill -9 of the
learner, and outcomes delivered twice, count nothing twice."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
import yaml

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import OUTCOMES
from pipeline.bus.codec import encode
from pipeline.client import replay, start_producer
from pipeline.envelope import ChatRequest, Envelope, RequestSection
from tests.integration.conftest import run
from tests.integration.helpers import eventually, landed, request
from tests.integration.test_routing import policy_edit, policy_status
from tests.integration.test_scaling import add_instance, health

pytestmark = pytest.mark.integration

SESSION_TENANT = "budget-session"
SPEND_TENANT = "budget-spend"
KILL_TENANT = "budget-kill"
TOKEN_LIMIT = 150
SPEND_LIMIT = 0.00012
BUDGETS = [
    {
        "name": "session-tokens",
        "scope": "session",
        "metric": "tokens",
        "window": "day",
        "limit": TOKEN_LIMIT,
        "tenants": [SESSION_TENANT],
    },
    {
        "name": "tenant-spend",
        "scope": "tenant",
        "metric": "usd",
        "window": "day",
        "limit": SPEND_LIMIT,
        "tenants": [SPEND_TENANT],
    },
    {
        "name": "counted-only",
        "scope": "tenant",
        "metric": "tokens",
        "window": "day",
        "limit": 10**9,
        "action": "flag",
        "tenants": [KILL_TENANT],
    },
]


def used(port: int, tenant: str, session: str | None = None) -> dict[str, float]:
    params = {"tenant": tenant, **({"session_id": session} if session else {})}
    shown = httpx.get(f"http://127.0.0.1:{port}/budgets", params=params, timeout=5).json()
    return {row["budget"]: row["used"] for row in shown}


def served(env: Envelope) -> tuple[int, float]:
    """Tokens and USD an answer was served (what the budgets count)."""
    out = env.outcome
    if out is None or out.status != "ok" or out.cache_hit:
        return 0, out.cost_usd if out else 0.0
    return out.prompt_tokens + out.completion_tokens, out.cost_usd


def section(text: str, tenant: str, session: str | None = None, max_tokens=None) -> RequestSection:
    body = ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=max_tokens)
    return RequestSection(tenant=tenant, session_id=session, body=body)


def ask_one(stack, section: RequestSection) -> Envelope:
    (env,) = run(replay(stack.settings.broker, [section], rate=0, timeout_s=60)).values()
    return env


@pytest.fixture(scope="module")
def budgets(stack):
    """The budgets in the policy, and a second router instance; both routers run the file."""
    path = stack.settings.policy
    with policy_edit(path) as data:
        data["budgets"] = BUDGETS
        path.write_text(yaml.safe_dump(data))
        ports = [stack.settings.stage_port("router"), add_instance(stack, "router", "router-2")]
        eventually(
            lambda: (
                sum(health(p).get("partitions", 0) for p in ports) == 4
                and all(health(p).get("partitions", 0) >= 1 for p in ports)
            ),
            what="two routers sharing the partitions",
        )
        eventually(
            lambda: all(
                httpx.get(f"http://127.0.0.1:{p}/policy", timeout=5).json()["error"] is None
                and used(p, SPEND_TENANT) == {"tenant-spend": 0.0}
                for p in ports
            ),
            what="both routers on the budgets",
        )
        yield ports
        stack.stop_process("router-2")
    eventually(lambda: policy_status(stack)["error"] is None, what="policy restored")


def until_rejected(
    stack, ports: list[int], sections: list[RequestSection], usage_of, metric: str
) -> tuple[list[Envelope], Envelope]:
    """Send ``sections`` one at a time; after each answer wait until every router sees exactly
    what was served so far counted (``usage_of(port)``), and stop at the first rejection.
    Returns the served answers and the rejected one."""
    answered: list[Envelope] = []
    total = 0.0
    for item in sections:
        env = ask_one(stack, item)
        if env.result.status == "error":
            return answered, env
        answered.append(env)
        tokens, usd = served(env)
        total += usd if metric == "usd" else tokens
        eventually(
            lambda total=total: all(usage_of(p) == pytest.approx(total) for p in ports),
            what=f"usage {total} seen by both routers",
        )
    raise AssertionError(f"never rejected after {len(answered)} answers (usage {total})")


def test_a_session_over_its_token_budget_is_stopped_at_the_right_request(stack, budgets):
    sections = [
        section(f"turn {i}: name a colour", SESSION_TENANT, "agent-1", max_tokens=20)
        for i in range(30)
    ]
    answered, rejected = until_rejected(
        stack,
        budgets,
        sections,
        lambda p: used(p, SESSION_TENANT, "agent-1")["session-tokens"],
        "tokens",
    )
    tokens = [served(env)[0] for env in answered]
    assert sum(tokens[:-1]) < TOKEN_LIMIT <= sum(tokens), tokens  # the last one crossed it
    assert rejected.result.error.type == "rate_limit_exceeded"
    assert "session-tokens" in rejected.result.error.message
    assert rejected.result.error.retry_after_s > 0
    assert rejected.decision.budget == "session-tokens"
    # another session of the same tenant still has its own budget
    other = ask_one(stack, section("hello", SESSION_TENANT, "agent-2"))
    assert other.result.status == "ok"


def test_a_tenant_over_its_daily_spend_is_refused_with_insufficient_quota(stack, budgets):
    sections = [
        section(f"question {i}: explain recursion briefly", SPEND_TENANT, max_tokens=40)
        for i in range(40)
    ]
    answered, rejected = until_rejected(
        stack, budgets, sections, lambda p: used(p, SPEND_TENANT)["tenant-spend"], "usd"
    )
    spend = [served(env)[1] for env in answered]
    assert sum(spend[:-1]) < SPEND_LIMIT <= sum(spend) + 1e-12, spend
    assert rejected.result.error.type == "insufficient_quota"
    landed(stack, [rejected.request.request_id])
    result = query_analytics(stack.settings, "budgets", {"tenant": SPEND_TENANT, "since": "1h"})
    rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
    assert [(r["budget"], r["budget_action"], r["requests"]) for r in rows] == [
        ("tenant-spend", "reject", 1)
    ]


def test_a_kill_9_of_the_learner_counts_no_outcome_twice(stack, budgets):
    sections = [request(f"drill {i}: explain a hash map", tenant=KILL_TENANT) for i in range(40)]

    async def scenario() -> dict[str, Envelope]:
        answers = asyncio.create_task(
            replay(stack.settings.broker, sections, rate=20, timeout_s=240)
        )
        await asyncio.sleep(1.0)
        stack.stop_process("learner", sig=signal.SIGKILL)
        await asyncio.sleep(0.5)
        stack.spawn("learner", ["stage", "learner"])
        return await answers

    answers = run(scenario())
    stack.wait_healthy(("learner",), simulators=False)
    assert all(env.result.status == "ok" for env in answers.values())
    expected = sum(served(env)[0] for env in answers.values())
    # the restarted learner rejoins its group, recovers its tables and consumes what the killed
    # one left: a while on a loaded machine
    assert stack.drain(240) == 0

    def counted() -> list[float]:
        return [used(p, KILL_TENANT)["counted-only"] for p in budgets]

    try:
        eventually(lambda: min(counted()) >= expected, 120, "every outcome counted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {counted()} of {expected} tokens") from None
    assert counted() == [expected, expected]

    async def redeliver() -> None:
        """Every outcome once more, as a dispatch instance killed before its commit would."""
        producer = await start_producer(stack.settings.broker)
        try:
            for env in answers.values():
                await producer.send_and_wait(
                    OUTCOMES, encode(env.outcome), key=env.request.request_id.encode()
                )
        finally:
            await producer.stop()

    run(redeliver())
    stack.drain()
    assert [used(p, KILL_TENANT)["counted-only"] for p in budgets] == [expected, expected]
