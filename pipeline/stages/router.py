"""router stage: wrp.screened -> decision + model -> wrp.routed (or a cached answer at once).

It tails four compacted topics into memory: ``wrp.router-state`` (the learner's arms),
``wrp.pool-state`` (pool health, for pool-aware selection), ``wrp.cache`` (answers dispatch
stored) and ``wrp.usage`` (what each tenant, API key and session was served, for budgets: a
request whose scope reached a budget is rejected, downgraded or flagged before anything else).
The policy file is watched and reloaded without a restart; ``GET /policy`` on the stage port
shows the version in force and the last reload error; ``GET /budgets`` what a tenant used.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import Counter

from pipeline.bus.catalog import (
    CACHE,
    OUTCOMES,
    POOL_STATE,
    ROUTED,
    ROUTER_STATE,
    SCREENED,
    USAGE,
    load_catalog,
)
from pipeline.bus.stage import Inbound, Outbound, Output, Stage, error_reply
from pipeline.bus.table import CompactedTable
from pipeline.envelope import (
    CacheEntry,
    Decision,
    Envelope,
    PoolState,
    Result,
    RouterState,
    Usage,
    now,
)
from pipeline.learn.usage import scope_owner, used
from pipeline.policy import Budget
from pipeline.policy.reload import PolicyWatcher
from pipeline.pool import outcomes
from pipeline.router import cache_entries
from pipeline.router.request import (
    Blocked,
    Cached,
    Refused,
    RequestRouter,
    Routed,
    RouteResult,
)
from pipeline.router.route import RouterRuntime
from pipeline.router.semantic_cache import CachedAnswer, SemanticCache
from pipeline.safety.verdict import refusal_response

#: Longest a fetch of ``wrp.usage`` waits for new records while budgets are in force (the lag
#: they may act late by); without budgets the tail idles like the other tables.
USAGE_WAIT_MS = 50
IDLE_WAIT_MS = 500


class RouterStage(Stage):
    name = "router"
    topics = (SCREENED,)
    requires = ("signals", "safety")
    refuses = ("decision", "result", "outcome")

    async def start(self) -> None:
        self.watcher = PolicyWatcher(self.settings.policy)
        self.watcher.start()
        self.cache = SemanticCache()
        self.arms = CompactedTable(self.settings.broker, ROUTER_STATE, RouterState)
        self.pools = CompactedTable(self.settings.broker, POOL_STATE, PoolState)
        self.cached = CompactedTable(
            self.settings.broker,
            CACHE,
            CacheEntry,
            on_record=lambda entry: cache_entries.store(self.cache, entry),
        )
        self.usage = self.usage_table(self.watcher.policy.budgets)
        for table in self.tables:
            await table.start()
        self.router = RequestRouter(
            runtime=RouterRuntime(
                arms=self.arms.values, pools=self.pools.values, policy_version=self.watcher.version
            ),
            cache=self.cache,
            usage=self.usage.values,
            outcome_partitions=range(load_catalog().get(OUTCOMES).partitions),
        )
        self.decisions = Counter(
            "wrp_router_decisions",
            "routing decisions",
            ["decision", "model", "explored"],
            registry=self.metrics.registry,
        )
        self.budget_actions = Counter(
            "wrp_router_budget_actions",
            "requests a reached budget rejected, downgraded or flagged",
            ["budget", "action"],
            registry=self.metrics.registry,
        )
        self.cache_lookups = Counter(
            "wrp_router_cache_lookups",
            "semantic cache lookups",
            ["result"],
            registry=self.metrics.registry,
        )

    async def stop(self) -> None:
        await self.watcher.stop()
        for table in self.tables:
            await table.stop()

    def usage_table(self, budgets: list[Budget]) -> CompactedTable[Usage]:
        """``wrp.usage`` tailed with a short fetch wait when budgets act on what was served
        moments ago; without budgets a fetch waits as long as the other tables' do."""
        wait = USAGE_WAIT_MS if budgets else IDLE_WAIT_MS
        return CompactedTable(self.settings.broker, USAGE, Usage, wait_ms=wait)

    async def follow_usage(self, budgets: list[Budget]) -> None:
        """A reload that brings budgets in switches the usage tail to the short wait."""
        if budgets and self.usage.wait_ms != USAGE_WAIT_MS:
            fast = self.usage_table(budgets)
            await fast.start()
            await fast.caught_up()
            old, self.usage = self.usage, fast
            self.router.usage = fast.values
            await old.stop()

    @property
    def tables(self) -> tuple[CompactedTable, ...]:
        return (self.arms, self.pools, self.cached, self.usage)

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/policy")
        async def policy() -> dict:
            return {
                "path": str(self.watcher.path),
                "version": self.watcher.version,
                "reloads": self.watcher.reloads,
                "error": self.watcher.error,
            }

        @app.get("/budgets")
        async def budgets(tenant: str, session_id: str | None = None) -> list[dict]:
            """What ``tenant`` (and its session) used of each budget governing it as counted, and
            what this instance routed that the count does not hold yet."""
            at = time.time()
            shown = []
            for budget in self.watcher.policy.budgets:
                owner = scope_owner(budget.scope, tenant, session_id, None)
                if budget.governs(tenant) and owner is not None:
                    records, parts = self.usage.values, self.router.outcome_partitions
                    shown.append(
                        {
                            "budget": budget.name,
                            "used": used(budget, owner, records, parts, at),
                            "reserved": self.router.reservations.pending(
                                budget, owner, records, parts, at
                            ),
                            "limit": budget.limit,
                        }
                    )
            return shown

    async def process(self, batch: list[Inbound]) -> list[Output]:
        started = now()
        policy = self.watcher.policy
        self.router.runtime.policy_version = self.watcher.version
        await self.follow_usage(policy.budgets)
        outputs: list[Output] = []
        for item in batch:
            env: Envelope = item.message  # type: ignore[assignment]
            answer = self.router.route(env, policy, time.time(), started)
            self.count(answer)
            match answer:
                case Routed(decision=decision, envelope=onward):
                    routed = onward.advance(self.name, started, decision=decision)
                    outputs.append(Outbound(ROUTED, env.key, routed))
                case Cached(decision=decision, answer=cached):
                    outputs.extend(self.answer_from_cache(env, decision, cached, started))
                case Blocked():
                    refusal = refusal_response(policy.safety.refusal)
                    result = Result(status="blocked", response=refusal, stage=self.name)
                    closed = env.advance(self.name, started, result=result)
                    outputs.append(Outbound(env.request.reply_to, env.key, closed))
                case Refused(decision=decision):
                    advanced = env.advance(self.name, started, decision=decision)
                    reply = error_reply(
                        advanced,
                        self.name,
                        answer.error_type,
                        answer.message,
                        retry_after_s=answer.retry_after_s,
                    )
                    outputs.append(reply)
        return outputs

    def count(self, answer: RouteResult) -> None:
        """The metrics of one request's answer: cache lookup, budget action, decision."""
        if answer.cache_lookup is not None:
            self.cache_lookups.labels(result=answer.cache_lookup).inc()
        decision = answer.decision if isinstance(answer, Routed | Refused) else None
        if decision is not None and decision.budget and decision.budget_action:
            self.budget_actions.labels(decision.budget, decision.budget_action).inc()
        if isinstance(answer, Routed):
            self.decisions.labels(decision.decision, decision.model, str(decision.explored)).inc()

    def answer_from_cache(
        self, env: Envelope, decision: Decision, answer: CachedAnswer, started: float
    ) -> list[Outbound]:
        """Reply with a cached answer and record it as a free, served outcome."""
        policy = self.watcher.policy
        decision_name = decision.decision
        spec = policy.router.find(decision_name)
        outcome = outcomes.from_cache(
            env,
            policy,
            decision_name,
            spec.models if spec else [],
            answer.model,
            decision.pool,
            answer.response,
            started,
            now(),
        )
        result = Result(status="ok", response=answer.response, stage=self.name)
        closed = env.advance(self.name, started, decision=decision, result=result, outcome=outcome)
        return [
            Outbound(env.request.reply_to, env.key, closed),
            Outbound(OUTCOMES, outcome.request_id, outcome),
        ]
