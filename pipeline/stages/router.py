"""router stage: wrp.screened -> decision + model -> wrp.routed (or a cached answer at once).

It tails three compacted topics into memory: ``wrp.router-state`` (the learner's arms),
``wrp.pool-state`` (pool health, for pool-aware selection) and ``wrp.cache`` (answers dispatch
stored). The policy file is watched and reloaded without a restart; ``GET /policy`` on the
stage port shows the version in force and the last reload error.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Counter

from pipeline.bus.catalog import CACHE, OUTCOMES, POOL_STATE, ROUTED, ROUTER_STATE, SCREENED
from pipeline.bus.stage import Inbound, Outbound, Output, Stage, error_reply
from pipeline.bus.table import CompactedTable
from pipeline.envelope import (
    CacheEntry,
    Decision,
    Envelope,
    Outcome,
    PoolState,
    Result,
    RouterState,
    now,
)
from pipeline.policy_reload import PolicyWatcher
from pipeline.router import caching
from pipeline.router.cache import CachedAnswer, SemanticCache
from pipeline.router.route import (
    BlockedByDecision,
    RouterRuntime,
    RoutingError,
    decision_spec,
    route,
)
from pipeline.safety.screen import redact_request, refusal_response


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
            on_record=lambda entry: caching.store(self.cache, entry),
        )
        for table in (self.arms, self.pools, self.cached):
            await table.start()
        self.runtime = RouterRuntime(
            arms=self.arms.values, pools=self.pools.values, policy_version=self.watcher.version
        )
        self.decisions = Counter(
            "wrp_router_decisions",
            "routing decisions",
            ["decision", "model", "explored"],
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
        for table in (self.arms, self.pools, self.cached):
            await table.stop()

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/policy")
        async def policy() -> dict:
            return {
                "path": str(self.watcher.path),
                "version": self.watcher.version,
                "reloads": self.watcher.reloads,
                "error": self.watcher.error,
            }

    async def process(self, batch: list[Inbound]) -> list[Output]:
        started = now()
        policy = self.watcher.policy
        self.runtime.policy_version = self.watcher.version
        outputs: list[Output] = []
        for item in batch:
            env: Envelope = item.message  # type: ignore[assignment]
            try:
                spec, redact = decision_spec(env, policy)
                config = caching.cache_config(policy, spec) if caching.cacheable(env) else None
                if config is not None:
                    answer = caching.lookup(self.cache, env, spec.name, config, started)
                    self.cache_lookups.labels(result="hit" if answer else "miss").inc()
                    if answer is not None:
                        outputs.extend(self.answer_from_cache(env, spec.name, answer, started))
                        continue
                decision = route(env, policy, self.runtime, (spec, redact))
                if config is not None:
                    decision.cache_ttl_s = config.ttl_s
            except BlockedByDecision:
                refusal = refusal_response(policy.safety.refusal)
                result = Result(status="blocked", response=refusal, stage=self.name)
                closed = env.advance(self.name, started, result=result)
                outputs.append(Outbound(env.request.reply_to, env.key, closed))
                continue
            except RoutingError as exc:
                outputs.append(
                    error_reply(
                        env.advance(self.name, started), self.name, exc.error_type, str(exc)
                    )
                )
                continue
            self.decisions.labels(decision.decision, decision.model, str(decision.explored)).inc()
            if decision.redact and env.safety is not None and env.request.body is not None:
                findings = [f for f in env.safety.pii if f.entity in decision.redact]
                body = redact_request(env.request.body, findings)
                env = env.model_copy(
                    update={"request": env.request.model_copy(update={"body": body})}
                )
            outputs.append(
                Outbound(ROUTED, env.key, env.advance(self.name, started, decision=decision))
            )
        return outputs

    def answer_from_cache(
        self, env: Envelope, decision_name: str, answer: CachedAnswer, started: float
    ) -> list[Outbound]:
        """Reply with a cached answer and record it as a free, served outcome."""
        policy = self.watcher.policy
        card = policy.model(answer.model) if answer.model else None
        spec = policy.router.find(decision_name)
        baseline = policy.strongest(spec.models if spec else [], env.signals and env.signals.domain)
        decision = Decision(
            decision=decision_name,
            candidates=[answer.model],
            model=answer.model,
            pool=card.pool if card else "",
            strategy="cache",
            cache_hit=True,
            policy_version=self.watcher.version,
        )
        finished = now()
        usage = answer.response.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        completion_tokens = int(usage.get("completion_tokens", 0))
        outcome = Outcome(
            request_id=env.request.request_id,
            tenant=env.request.tenant,
            decision=decision_name,
            model=answer.model,
            pool=decision.pool,
            endpoint="cache",
            status="ok",
            attempts=0,
            latency_ms=round((finished - started) * 1000, 3),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=0.0,
            baseline_model=baseline.name if baseline else None,
            baseline_cost_usd=round(baseline.price.cost(prompt_tokens, completion_tokens), 8)
            if baseline
            else 0.0,
            dispatched_at=started,
            completed_at=finished,
            cache_hit=True,
        )
        result = Result(status="ok", response=answer.response, stage=self.name)
        closed = env.advance(self.name, started, decision=decision, result=result, outcome=outcome)
        return [
            Outbound(env.request.reply_to, env.key, closed),
            Outbound(OUTCOMES, outcome.request_id, outcome),
        ]
