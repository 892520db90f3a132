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
from typing import Any

import aiohttp
import httpx

from pipeline.bus.catalog import CACHE, OUTCOMES, POOL_STATE, ROUTED
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import encode
from pipeline.bus.liveness import instance_id
from pipeline.bus.stage import Inbound, Outbound, Pending, Stage, error_reply
from pipeline.envelope import AnswerScreen, Envelope, ErrorInfo, Result, now
from pipeline.models.encoder import load_encoder
from pipeline.models.heads import load_trained
from pipeline.policy import AnswerScreening, Policy
from pipeline.policy.reload import PolicyWatcher
from pipeline.pool import outcomes
from pipeline.pool.dispatcher import Dispatcher, PoolCall
from pipeline.pool.ladder import Ladder
from pipeline.pool.scrape import MetricsScraper
from pipeline.pool.selection import RequestShape
from pipeline.pool.shape import request_shape
from pipeline.pool.streaming import StreamRelay
from pipeline.router import cache_entries
from pipeline.safety.answers import AnswerModeration, Moderate, StreamScreen, screen_response

log = logging.getLogger(__name__)

#: Requests in flight to pools at once from one dispatch process.
MAX_IN_FLIGHT = 256
#: Seconds between pool-state publications.
POOL_STATE_INTERVAL_S = 1.0


def _cacheable(verdict: AnswerScreen | None) -> bool:
    """Whether an answer may be served again from the cache: not one screening blocked."""
    return verdict is None or verdict.action != "block"


def screened(
    response: dict[str, Any],
    stream: StreamRelay | None,
    env: Envelope,
    screening: AnswerScreening,
    moderate: Moderate | None,
) -> tuple[dict[str, Any], AnswerScreen | None]:
    """The answer as the client may have it, and the screening's verdict (a streamed answer was
    screened chunk by chunk as it was relayed)."""
    if stream is not None and isinstance(stream.screen, StreamScreen):
        return stream.screen.screened_response(response), stream.screen.verdict()
    return screen_response(response, env.safety, screening, moderate)


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
        decision = env.decision
        assert decision is not None
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
        ladder = Ladder.of(decision, policy)
        missing = ladder.unknown(policy)
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
        shape = request_shape(env)
        dispatched_at = now()
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

        climb = await ladder.climb(
            lambda model: self.call_model(policy, env, model, shape, stream_of(model))
        )
        call, card = climb.answer, policy.model(climb.model)
        if stream is not None and call.relayed:
            await stream.close(None if call.response is not None else self.failure(call))
        completed_at = now()
        outcome = outcomes.dispatched(env, policy, climb, dispatched_at, completed_at)
        response, verdict = call.response, None
        if response is not None and screening.enabled:
            response, verdict = screened(response, stream, env, screening, moderate)
        outputs: list[Outbound] = []
        if response is not None and decision.cache_ttl_s is not None and _cacheable(verdict):
            entry = cache_entries.entry_for(env, card.name, response, completed_at)
            if entry is not None:
                outputs.append(Outbound(CACHE, cache_entries.topic_key(entry), entry))
        if response is not None:
            result = Result(status="ok", response=response, stage=self.name, screen=verdict)
        else:
            result = Result(status="error", stage=self.name, error=self.failure(call))
        closed = env.advance(self.name, started, result=result, outcome=outcome)
        return [
            *outputs,
            Outbound(env.request.reply_to, env.key, closed),
            Outbound(OUTCOMES, outcome.request_id, outcome),
        ]

    def failure(self, call: PoolCall) -> ErrorInfo:
        """The error a pool call without an answer ends in."""
        return ErrorInfo(
            type=call.error_type or "pool_error", message=call.error or "", stage=self.name
        )
