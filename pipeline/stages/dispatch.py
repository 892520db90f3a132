"""dispatch stage: wrp.routed -> the chosen pool's endpoint -> wrp.responses + wrp.outcomes."""

from __future__ import annotations

import asyncio

import httpx

from pipeline.bus.catalog import OUTCOMES, ROUTED
from pipeline.bus.runner import Inbound, Outbound, Rejected, Stage, error_reply
from pipeline.envelope import Envelope, ErrorInfo, Outcome, Result, now
from pipeline.policy import Policy, load_policy
from pipeline.pool.client import call_pool
from pipeline.pool.endpoints import LeastOutstanding

#: Requests in flight to pools at once, across the batch.
MAX_IN_FLIGHT = 256


class DispatchStage(Stage):
    name = "dispatch"
    topics = (ROUTED,)
    requires = ("signals", "decision")

    policy: Policy

    async def start(self) -> None:
        self.policy = load_policy(self.settings.policy)
        self.balancer = LeastOutstanding()
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
        )
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def stop(self) -> None:
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
        pool = self.policy.pool(decision.pool)
        card = self.policy.model(decision.model)
        payload = body.model_dump(exclude_none=True)
        payload.update(model=card.name, stream=False)
        dispatched_at = now()
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
        outcome = Outcome(
            request_id=env.request.request_id,
            decision=decision.decision,
            model=card.name,
            pool=pool.name,
            endpoint=call.endpoint,
            status="ok" if call.response is not None else "error",
            error_type=call.error_type,
            attempts=call.attempts,
            latency_ms=round(call.latency_ms, 3),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=card.price.cost(prompt_tokens, completion_tokens)
            if call.response is not None
            else 0.0,
            dispatched_at=dispatched_at,
            completed_at=now(),
        )
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
            Outbound(env.request.reply_to, env.key, closed),
            Outbound(OUTCOMES, outcome.request_id, outcome),
        ]
