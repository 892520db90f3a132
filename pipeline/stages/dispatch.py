"""dispatch stage: wrp.routed -> the chosen pool's endpoint -> wrp.responses + wrp.outcomes.

Each record's pool call is :class:`~pipeline.bus.stage.Pending` work: the runner keeps up to
``MAX_IN_FLIGHT`` of them going at once and answers each as soon as its call ends; consumption
pauses while a pool has every endpoint at its in-flight cap. Every second the stage publishes its
view of each endpoint it used to ``wrp.pool-state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import aiohttp
import httpx

from pipeline.bus.catalog import CACHE, OUTCOMES, POOL_STATE, ROUTED
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import encode
from pipeline.bus.liveness import instance_id
from pipeline.bus.stage import Inbound, Outbound, Pending, Stage, error_reply
from pipeline.envelope import AnswerScreen, Attempt, Envelope, ErrorInfo, Outcome, Result, now
from pipeline.models.encoder import load_encoder
from pipeline.models.heads import load_trained
from pipeline.policy import AnswerScreening, CascadeConfig, Policy
from pipeline.policy.reload import PolicyWatcher
from pipeline.pool.blocks import block_hashes, chat_prompt, prompt_pieces
from pipeline.pool.dispatcher import Dispatcher, PoolCall
from pipeline.pool.scrape import MetricsScraper
from pipeline.pool.selection import RequestShape
from pipeline.pool.streaming import StreamRelay
from pipeline.router import cache_entries
from pipeline.router.strategies.cascade import failed_check
from pipeline.safety.answers import AnswerModeration, Moderate, StreamScreen, screen_response

log = logging.getLogger(__name__)

#: Requests in flight to pools at once from one dispatch process.
MAX_IN_FLIGHT = 256
#: Seconds between pool-state publications.
POOL_STATE_INTERVAL_S = 1.0


def _count(usage: object, key: str, default: int) -> int:
    """A token count of a pool's ``usage``, or ``default`` when the pool gave none usable."""
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else default


def _cacheable(verdict: AnswerScreen | None) -> bool:
    """Whether an answer may be served again from the cache: not one screening blocked."""
    return verdict is None or verdict.action != "block"


def request_shape(env: Envelope) -> RequestShape:
    body, signals = env.request.body, env.signals
    assert body is not None and signals is not None
    pieces = prompt_pieces(chat_prompt([m.text() for m in body.messages]))
    return RequestShape(
        key=env.request.session_id or env.request.request_id,
        prompt_tokens=max(len(pieces), signals.prompt_tokens),
        output_tokens=body.max_tokens or signals.expected_output_tokens,
        blocks=block_hashes(pieces),
    )


class DispatchStage(Stage):
    name = "dispatch"
    topics = (ROUTED,)
    requires = ("signals", "decision")
    refuses = ("result", "outcome")
    concurrency = MAX_IN_FLIGHT

    async def start(self) -> None:
        self.watcher = PolicyWatcher(self.settings.policy)
        self.watcher.start()
        # pool calls on aiohttp (a plain call costs a fifth of httpx's); scrapes on httpx
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self.client = httpx.AsyncClient()
        self.dispatcher = Dispatcher(self.session)
        self.pools_version = self.watcher.version
        self.dispatcher.sync(self.watcher.policy.pools)
        self.scraper = MetricsScraper(self.client)
        self.scraper.start(self.dispatcher.pools)
        self.instance = instance_id()
        self._moderation: AnswerModeration | None = None  # loaded when a policy first asks
        self.producer = new_producer(self.settings.broker, linger_ms=5)
        await self.producer.start()
        self.publisher = asyncio.create_task(self.publish_pool_state())

    async def stop(self) -> None:
        self.publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.publisher
        with contextlib.suppress(Exception):  # best effort: the broker may be gone already
            await self.send_pool_state()
        await self.producer.stop()
        await self.scraper.stop()
        await self.watcher.stop()
        await self.client.aclose()
        await self.session.close()

    def accepting(self) -> bool:
        return not self.dispatcher.full

    async def send_pool_state(self) -> None:
        for endpoints in self.dispatcher.pools.values():
            for state in endpoints.pool_states(self.instance):
                await self.producer.send(POOL_STATE, encode(state), key=state.key.encode())

    async def publish_pool_state(self) -> None:
        while True:
            await asyncio.sleep(POOL_STATE_INTERVAL_S)
            try:
                await self.send_pool_state()
            except Exception as exc:  # the next round retries; routing degrades, dispatch goes on
                log.warning("dispatch: publishing pool state failed: %r", exc)

    def policy(self) -> Policy:
        if self.watcher.version != self.pools_version:
            self.dispatcher.sync(self.watcher.policy.pools)
            self.pools_version = self.watcher.version
        return self.watcher.policy

    def answer_moderation(self, policy: Policy, config: AnswerScreening) -> Moderate | None:
        """The moderation head over answers when ``config`` asks for it (the encoder is loaded
        on first use: it costs an encoder pass per answer)."""
        if config.moderation == "off":
            return None
        if self._moderation is None:
            s = self.settings
            encoder = load_encoder(
                s.model_dir, s.encoder_threads, s.encoder_max_tokens, s.encoder_batch
            )
            head = load_trained("moderation", encoder.name, encoder.max_tokens)
            self._moderation = AnswerModeration(encoder, head)
        return functools.partial(
            self._moderation.categories, thresholds=policy.safety.moderation.thresholds
        )

    async def process(self, batch: list[Inbound]) -> list[Pending]:
        started = now()
        return [
            Pending(item, functools.partial(self.dispatch, item.message, started))  # type: ignore[arg-type]
            for item in batch
        ]

    async def call_model(
        self,
        policy: Policy,
        env: Envelope,
        model: str,
        shape: RequestShape,
        stream: StreamRelay | None = None,
    ) -> PoolCall:
        """One model's answer, relayed to ``stream`` as it is generated when given."""
        body, decision = env.request.body, env.decision
        assert body is not None and decision is not None
        card = policy.model(model)
        payload = body.model_dump(exclude_none=True, exclude={"stream", "stream_options"})
        payload["model"] = card.name
        if decision.reasoning and card.reasoning:
            payload["chat_template_kwargs"] = {"enable_thinking": True}
        return await self.dispatcher.call(
            policy.pool(card.pool),
            payload,
            shape,
            env.request.deadline,
            stream.relay if stream is not None else None,
        )

    async def dispatch(self, env: Envelope, started: float) -> list[Outbound]:
        decision, signals = env.decision, env.signals
        assert decision is not None and signals is not None
        if env.request.deadline is not None and now() > env.request.deadline:
            return [
                error_reply(
                    env.advance(self.name, started),
                    self.name,
                    "deadline_exceeded",
                    "the request's deadline passed before it reached a pool",
                )
            ]
        policy = self.policy()
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
        shape = request_shape(env)
        dispatched_at = now()
        escalated: list[str] = []
        cost = gpu_cost = energy = 0.0
        attempts = 0
        attempt_log: list[Attempt] = []
        fallback_from = None
        rungs = [decision.model, *decision.ladder]
        streams = bool(env.request.body and env.request.body.stream)
        stream: StreamRelay | None = None
        screening = policy.safety.answers.for_tenant(env.request.tenant)
        moderate = self.answer_moderation(policy, screening) if screening.enabled else None

        def stream_of(model: str) -> StreamRelay | None:
            """A stream for a call to ``model``, when the client streams (the one used is the
            one whose call relayed something)."""
            nonlocal stream
            if streams:
                card = policy.model(model)
                screen = (
                    StreamScreen(screening, env.safety, moderate) if screening.enabled else None
                )
                stream = StreamRelay(
                    self.producer,
                    env.request.request_id,
                    decision.decision,
                    card.name,
                    card.pool,
                    screen,
                )
            return stream

        for rung, name in enumerate(rungs):
            model = name
            call = await self.call_model(policy, env, model, shape, stream_of(model))
            fallback = decision.fallback
            if (
                call.response is None
                and not call.relayed
                and fallback in known
                and call.error_type != "deadline_exceeded"
                and not escalated
            ):
                attempts += call.attempts
                attempt_log.extend(call.log)
                fallback_from, model = name, fallback
                call = await self.call_model(policy, env, model, shape, stream_of(model))
            attempts += call.attempts
            attempt_log.extend(call.log)
            usage = (call.response or {}).get("usage")
            prompt_tokens = _count(usage, "prompt_tokens", signals.prompt_tokens)
            completion_tokens = _count(usage, "completion_tokens", 0)
            if call.response is not None:
                cost += policy.model(model).price.cost(prompt_tokens, completion_tokens)
            gpu_cost += call.gpu_cost_usd
            energy += call.energy_j
            last = rung == len(rungs) - 1
            # a streamed answer reached the client: it is the answer, whatever a check says
            if call.response is None or last or call.relayed:
                break
            if failed_check(call.response, cascade) is None:
                break
            escalated.append(model)
        if stream is not None and call.relayed:
            failure = None
            if call.response is None:
                failure = ErrorInfo(
                    type=call.error_type or "pool_error", message=call.error or "", stage=self.name
                )
            await stream.close(failure)
        completed_at = now()
        deadline = env.request.deadline
        card = policy.model(model)
        baseline = policy.strongest(decision.candidates, signals.domain)
        outcome = Outcome(
            request_id=env.request.request_id,
            tenant=env.request.tenant,
            session_id=env.request.session_id,
            api_key=env.request.api_key,
            decision=decision.decision,
            model=card.name,
            pool=card.pool,
            endpoint=call.endpoint,
            status="ok" if call.response is not None else "error",
            error_type=call.error_type,
            attempts=attempts,
            latency_ms=round((completed_at - dispatched_at) * 1000, 3),
            ttft_ms=call.ttft_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=round(cost, 8),
            gpu_cost_usd=round(gpu_cost, 8),
            energy_j=round(energy, 3),
            dispatched_at=dispatched_at,
            completed_at=completed_at,
            explored=decision.explored,
            escalated_from=escalated,
            fallback_from=fallback_from,
            attempt_log=attempt_log,
            baseline_model=baseline.name if baseline else None,
            baseline_cost_usd=round(baseline.price.cost(prompt_tokens, completion_tokens), 8)
            if baseline and call.response is not None
            else 0.0,
            slo_missed=deadline is not None and completed_at > deadline,
            prior=decision.prior,
            context=decision.context,
        )
        response, verdict = call.response, None
        if response is not None and screening.enabled:
            if stream is not None and isinstance(stream.screen, StreamScreen):
                response, verdict = (
                    stream.screen.screened_response(response),
                    stream.screen.verdict(),
                )
            else:
                response, verdict = screen_response(response, env.safety, screening, moderate)
        outputs: list[Outbound] = []
        if response is not None and decision.cache_ttl_s is not None and _cacheable(verdict):
            entry = cache_entries.entry_for(env, card.name, response, completed_at)
            outputs.append(Outbound(CACHE, cache_entries.topic_key(entry), entry))
        if response is not None:
            result = Result(status="ok", response=response, stage=self.name, screen=verdict)
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
