"""``wrp bench budgets``: how soon a served answer counts against a budget, and what that means
for a client that sends its next request at once.

Starts the embedded stack (default fused stages, simulated pools answering at once) with a copy
of the policy plus two budgets, then:

1. *visibility*: one session sends requests one after another; after each answer the router's
   ``/budgets`` is polled every 2 ms until it counts that answer. Reported beside it, from the
   same requests' trails: how long a request takes from the client to the router (publish to
   routing decision), the head start a client's next request gives the count.
2. *overshoot*: sessions with a token budget send their next request as soon as an answer
   arrives (no waiting for the count); reported: requests served after the budget was reached.
3. *cost*: CPU time of the router's budget check per request, with no budgets and with three
   governing the request, in-process.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import time

import httpx
import yaml

from pipeline.bench.overhead import distinct_messages, percentiles
from pipeline.bus.catalog import REQUESTS, RESPONSES
from pipeline.bus.codec import encode
from pipeline.client import ResponseCollector, start_producer
from pipeline.envelope import ChatRequest, Envelope, RequestSection, Usage
from pipeline.learn.usage import served, window_start
from pipeline.policy import Budget, load_policy
from pipeline.router.budgets import over_budget
from pipeline.settings import Settings
from pipeline.stack import FRONT, Stack

TENANT = "bench-budgets"
TOKEN_LIMIT = 400
BUDGETS = [
    {"name": "visible", "scope": "tenant", "metric": "tokens", "window": "day",
     "limit": 10**12, "action": "flag", "tenants": [TENANT]},
    {"name": "session-tokens", "scope": "session", "metric": "tokens", "window": "day",
     "limit": TOKEN_LIMIT, "tenants": [TENANT]},
]  # fmt: skip


class _Client:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # the fused front process serves the router's routes on its first stage's port
        self.budgets_url = f"http://127.0.0.1:{settings.stage_port(FRONT)}/budgets"

    async def __aenter__(self) -> _Client:
        self.producer = await start_producer(self.settings.broker)
        self.collector = ResponseCollector(self.settings.broker, RESPONSES, retain=False)
        await self.collector.start()
        self.http = httpx.AsyncClient(timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.collector.stop()
        await self.producer.stop()

    async def ask(self, session: str, i: int) -> Envelope:
        body = ChatRequest(messages=distinct_messages(session, i), max_tokens=40)
        section = RequestSection(tenant=TENANT, session_id=session, body=body)
        future = self.collector.expect(section.request_id)
        envelope = Envelope(request=section)
        await self.producer.send_and_wait(REQUESTS, encode(envelope), key=envelope.key.encode())
        answer = await self.collector.response(future, section.request_id, 60)
        assert answer is not None, "no answer within 60 s"
        return answer

    async def used(self, budget: str, session: str | None = None) -> float:
        params = {"tenant": TENANT, **({"session_id": session} if session else {})}
        shown = (await self.http.get(self.budgets_url, params=params)).json()
        return next(row["used"] for row in shown if row["budget"] == budget)


def _tokens(env: Envelope) -> int:
    """What a budget counts of an answer (the learner's own rule)."""
    return served(env.outcome)[0] if env.outcome is not None else 0


async def _visibility(client: _Client, count: int) -> dict:
    lags, to_router = [], []
    counted = await client.used("visible")
    for i in range(count):
        answer = await client.ask("visibility", i)
        arrived = time.time()
        counted += _tokens(answer)
        give_up = time.monotonic() + 30
        while await client.used("visible") < counted:
            if time.monotonic() > give_up:
                raise RuntimeError(f"answer {i} not counted within 30 s")
            await asyncio.sleep(0.002)
        lags.append((time.time() - arrived) * 1000)
        router = next(span for span in answer.trail if span.stage.endswith("router"))
        to_router.append((router.end - answer.request.created_at) * 1000)
    return {
        "answer_to_counted_ms": percentiles(lags),
        "client_to_routing_decision_ms": percentiles(to_router),
    }


async def _overshoot(client: _Client, sessions: int) -> dict:
    async def session(name: str) -> tuple[int, int]:
        """Requests served after the limit was reached, and the tokens beyond it."""
        total, after = 0, 0
        for i in range(100):
            answer = await client.ask(name, i)
            if answer.result is None or answer.result.status != "ok":
                break
            after += total >= TOKEN_LIMIT
            total += _tokens(answer)
        return after, max(total - TOKEN_LIMIT, 0)

    results = [await session(f"overshoot-{s}") for s in range(sessions)]
    return {
        "sessions": sessions,
        "token_limit": TOKEN_LIMIT,
        "served_after_the_limit": [after for after, _ in results],
        "tokens_over_the_limit": [tokens for _, tokens in results],
    }


def _check_cost(calls: int = 20000) -> dict:
    policy = load_policy(Settings().policy)
    budgets = [Budget.model_validate(b) for b in BUDGETS] + [
        Budget(name="spend", scope="tenant", metric="usd", window="month", limit=100)
    ]
    at = time.time()
    records = {
        u.key: u
        for p in range(4)
        for b in budgets
        for u in [
            Usage(scope=b.scope, who=f"{TENANT}/s" if b.scope == "session" else TENANT,
                  window=b.window, start=window_start(b.window, at), partition=p, tokens=1)
        ]
    }  # fmt: skip
    section = RequestSection(tenant=TENANT, session_id="s", body=ChatRequest(messages=[
        {"role": "user", "content": "hi"}]))  # fmt: skip
    timings = {}
    for label, governing in (("no budgets", policy.budgets), ("three budgets", budgets)):
        started = time.process_time()
        for _ in range(calls):
            over_budget(governing, section, records, range(4), at)
        timings[label] = round((time.process_time() - started) / calls * 1e6, 2)
    return {"cpu_us_per_request": timings}


def run_budgets_bench(settings: Settings, count: int) -> dict:
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "bench-budgets"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    settings.state_dir.mkdir(parents=True)
    data = yaml.safe_load(settings.policy.read_text())
    data["budgets"] = BUDGETS
    policy = settings.state_dir / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    settings = settings.model_copy(update={"policy": policy})
    stack = Stack(
        settings, broker_port=int(settings.broker.rsplit(":", 1)[1]), simulate_latency=False
    )
    report: dict = {
        "setup": {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "stack": "embedded: Tansu, default fused stages, simulated pools answering at once",
            "visibility": f"{count} sequential requests of one session",
            "overshoot": f"5 sessions, next request at once after each answer, session "
            f"token budget {TOKEN_LIMIT}",
        }
    }

    async def measure() -> None:
        async with _Client(settings) as client:
            print("warm-up: until the learner counts ...", flush=True)
            await _visibility(client, 5)  # the learner joins its group after it is healthy
            print("visibility ...", flush=True)
            report["visibility"] = await _visibility(client, count)
            print("overshoot ...", flush=True)
            report["overshoot"] = await _overshoot(client, 5)

    try:
        stack.start()
        asyncio.run(measure())
    finally:
        stack.stop()
    report["check"] = _check_cost()
    return report
