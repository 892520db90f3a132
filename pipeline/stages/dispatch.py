"""dispatch stage: wrp.routed -> the chosen pool's endpoint -> wrp.responses + wrp.outcomes."""

from __future__ import annotations

import asyncio

import httpx

from pipeline.bus.catalog import CACHE, OUTCOMES, ROUTED
from pipeline.bus.runner import Inbound, Outbound, Rejected, Stage, error_reply
from pipeline.envelope import Envelope, ErrorInfo, Outcome, Result, now
from pipeline.policy import CascadeConfig
from pipeline.policy_reload import PolicyWatcher
from pipeline.pool.client import call_pool
from pipeline.pool.endpoints import LeastOutstanding
from pipeline.router import caching
from pipeline.router.strategies.cascade import failed_check

#: Requests in flight to pools at once, across the batch.
MAX_IN_FLIGHT = 256


class DispatchStage(Stage):
    name = "dispatch"
    topics = (ROUTED,)
    requires = ("signals", "decision")

    async def start(self) -> None:
        self.watcher = PolicyWatcher(self.settings.policy)
        self.watcher.start()
        self.balancer = LeastOutstanding()
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
        )
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.client.aclose()

    async def process(self, batch: list[Inbound]) -> list[Outbound | Rejected]:
        started = now()
        envelopes: list[Envelope] = [item.message for item in batch]  # type: ignore[misc]
        served = await asyncio.gather(*(self.dispatch(env, started) for env in envelopes))
        return [out for outs in served for out in outs]

    async def dispatch(self, env: Envelope, started: float) -> list[Outbound]:
        decision, body = env.decision, env.request.body
        assert decision is not None and body is not None and env.signals is not None
        if env.request.deadline is not None and now() > env.request.deadline:
            return [
                error_reply(
                    env.advance(self.name, started),
                    self.name,
                    "deadline_exceeded",
                    "the request's deadline passed before it reached a pool",
                )
            ]
        policy = self.watcher.policy
        known = {card.name for card in policy.models}
        missing = [name for name in [decision.model, *decision.ladder] if name not in known]
        if missing:
            return [
                error_reply(
                    env.advance(self.name, started),
                    self.name,
                    "model_not_found",
                    f"model(s) {missing} are not in the policy in force (version "
                    f"{self.watcher.version}); the policy changed after routing: retry",
                )
            ]
        spec = policy.router.find(decision.decision)
        cascade = spec.cascade if spec is not None else CascadeConfig()
        dispatched_at = now()
        escalated: list[str] = []
        cost = 0.0
        rungs = [decision.model, *decision.ladder]
        for rung, name in enumerate(rungs):
            card = policy.model(name)
            pool = policy.pool(card.pool)
            payload = body.model_dump(exclude_none=True)
            payload.update(model=card.name, stream=False)
            if decision.reasoning and card.reasoning:
                payload["chat_template_kwargs"] = {"enable_thinking": True}
            async with self.in_flight:
                call = await call_pool(
                    self.client,
                    self.balancer,
                    [e.url for e in pool.endpoints],
                    payload,
                    pool.timeout_s,
                    pool.retries,
                )
            usage = (call.response or {}).get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens", env.signals.prompt_tokens))
            completion_tokens = int(usage.get("completion_tokens", 0))
            if call.response is not None:
                cost += card.price.cost(prompt_tokens, completion_tokens)
            last = rung == len(rungs) - 1
            if call.response is None or last or failed_check(call.response, cascade) is None:
                break
            escalated.append(name)
        completed_at = now()
        deadline = env.request.deadline
        outcome = Outcome(
            request_id=env.request.request_id,
            decision=decision.decision,
            model=card.name,
            pool=pool.name,
            endpoint=call.endpoint,
            status="ok" if call.response is not None else "error",
            error_type=call.error_type,
            attempts=call.attempts,
            latency_ms=round((completed_at - dispatched_at) * 1000, 3),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=round(cost, 8),
            dispatched_at=dispatched_at,
            completed_at=completed_at,
            explored=decision.explored,
            escalated_from=escalated,
            slo_missed=deadline is not None and completed_at > deadline,
            prior=decision.prior,
            context=decision.context,
        )
        outputs: list[Outbound] = []
        if call.response is not None and decision.cache_ttl_s is not None:
            entry = caching.entry_for(
                env, decision.decision, card.name, call.response, decision.cache_ttl_s, completed_at
            )
            outputs.append(Outbound(CACHE, caching.topic_key(entry), entry))
        if call.response is not None:
            result = Result(status="ok", response=call.response, stage=self.name)
        else:
            result = Result(
                status="error",
                stage=self.name,
                error=ErrorInfo(
                    type=call.error_type or "pool_error", message=call.error or "", stage=self.name
                ),
            )
        closed = env.advance(self.name, started, result=result, outcome=outcome)
        return [
            *outputs,
            Outbound(env.request.reply_to, env.key, closed),
            Outbound(OUTCOMES, outcome.request_id, outcome),
        ]
