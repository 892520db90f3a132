"""learner stage: a faust-streaming app folding feedback and outcomes into ``wrp.router-state``.

1. outcomes and feedback (both keyed by request_id, so co-partitioned) meet in the ``served``
   table (the join, :mod:`pipeline.learn.join`): an outcome remembers which arm served its
   request and for which tenant; feedback for a request is credited to that arm once per
   (request, source), and only when it comes from the request's own tenant
   (``pipeline.learn.judgements``; ``judged`` remembers the sources credited). Implicit
   feedback (source ``implicit``, read by the signals stage from the user's next turn) is one
   more source, weighed by ``router.learning.implicit.weight``. Feedback that arrives first
   waits in ``pending``, for a day at most (the gateway accepts feedback only for requests a
   model answered, but implicit feedback may judge a request safety blocked, whose outcome
   never comes). The outcome's own evidence (failed calls, failed cascade rungs, SLO misses) is
   credited at once; cached answers credit no model. Credits go to ``wrp.learner-credits``
   keyed by arm.
2. credits, now partitioned by arm, fold into the ``arms`` table with exponential decay
   (``router.learning.half_life_s`` of the policy read at start, see ``pipeline.learn.evidence``);
   every change is published, with a version one higher, to the compacted ``wrp.router-state``
   that every router instance tails, so all instances converge on the same arms. An arm the
   ``arms`` table does not hold yet starts from its last version on ``wrp.router-state``, read
   once at start: after a restart of the embedded broker the changelog is gone, but
   ``wrp analytics restore`` has put the arms back on that topic.

3. outcomes also fold into budget usage (``pipeline.learn.usage``): for every (scope, window) a
   budget of the policy tracks, one ``wrp.usage`` record per outcome partition, carrying the
   offset of the last outcome counted, so an outcome redelivered after a crash is not counted
   twice. Routers sum the partitions. Usage is sent at once and acknowledged before the outcome
   is done with.

Anything else an event sends is published when its offset is committed (faust's attachments,
every few seconds once the stream has moved past the event). Tables are changelog-backed, so
a restarted learner resumes with its counts. Bad records go to ``wrp.dlq``. ``/healthz`` and
``/metrics`` are every stage's (:func:`pipeline.bus.health.health_app`), on the stage port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import faust
from prometheus_client import Counter
from pydantic import ValidationError

from pipeline.bus.admission import describe_validation_error
from pipeline.bus.catalog import (
    CREDITS,
    DLQ,
    FEEDBACK,
    OUTCOMES,
    ROUTER_STATE,
    STAGE_HEALTH,
    USAGE,
    load_catalog,
)
from pipeline.bus.clients import new_producer
from pipeline.bus.codec import decode, encode
from pipeline.bus.dead_letters import dead_lettered
from pipeline.bus.health import StageMetrics, health_app
from pipeline.bus.liveness import HEARTBEAT_S, heartbeat, instance_id
from pipeline.bus.table import CompactedTable
from pipeline.envelope import Contract, Credit, Feedback, Outcome, RouterState, Usage, usage_key
from pipeline.http_server import serve_http
from pipeline.learn.evidence import fold
from pipeline.learn.join import OutcomeFeedbackJoin, Verdict
from pipeline.learn.usage import ended, fold_usage, newer, scope_owner, tracked
from pipeline.policy import load_policy
from pipeline.policy.reload import PolicyWatcher
from pipeline.settings import Settings

log = logging.getLogger(__name__)


STAGE = "learner"


def build_learner(
    settings: Settings, port: int | None = None, status: dict[str, object] | None = None
) -> faust.App:
    """The learner's faust app; ``status`` (what ``/healthz`` and the heartbeats say) is
    shared with the worker that runs it, which says "stopping" first."""
    catalog = load_catalog()
    learning = load_policy(settings.policy).router.learning
    partitions = catalog.get(OUTCOMES).partitions
    app = faust.App(
        "wrp-learner",
        broker=f"kafka://{settings.broker}",
        store="memory://",
        datadir=str(settings.state_dir / "learner"),
        topic_partitions=partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        web_enabled=False,  # health and metrics are every stage's app, below
        producer_acks=-1,
    )
    metrics = StageMetrics(STAGE)
    ignored = Counter(
        "wrp_learner_feedback_ignored",
        "feedback not credited, by reason",
        ["reason"],
        registry=metrics.registry,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=catalog.get(name).partitions,
        )

    outcomes, feedback, credits = topic(OUTCOMES), topic(FEEDBACK), topic(CREDITS)
    router_state, dlq, health = topic(ROUTER_STATE), topic(DLQ), topic(STAGE_HEALTH)
    usage_topic = topic(USAGE)
    budgets = PolicyWatcher(settings.policy)  # refreshed as outcomes come: budgets may change
    usage_seen: dict[str, Usage] = {}  # becomes the live view of wrp.usage once it is read
    usage_sent: dict[str, Usage] = {}
    usage_read = asyncio.Event()
    instance = instance_id()
    status = {"state": "starting"} if status is None else status
    # what the learner opens itself, closed on shutdown
    servers: list[tuple[asyncio.Task[None], Any]] = []
    usage_followed: list[CompactedTable[Usage]] = []
    join = OutcomeFeedbackJoin(
        app.Table("served", partitions=partitions),
        app.Table("pending", partitions=partitions),
        app.Table("judged", partitions=partitions),
        learning,
    )
    arms = app.Table("arms", partitions=catalog.get(CREDITS).partitions)

    async def read(event: faust.EventT, model: type[Contract]) -> Any:
        """The event's payload, or None after dead-lettering it."""
        message = event.message
        try:
            return decode(message.value, model)
        except (ValidationError, ValueError) as exc:
            error = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            record = SimpleNamespace(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                timestamp=round(message.timestamp * 1000),  # faust gives seconds
                value=message.value or b"",
            )
            letter = dead_lettered(STAGE, record, "invalid_schema", error, None, metrics)
            await dlq.send(value=encode(letter))
            return None

    async def send_credit(credit: Credit) -> None:
        key = f"{credit.decision}/{credit.model}".encode()
        await credits.send(key=key, value=encode(credit))

    async def credit(verdicts: Iterable[Verdict]) -> None:
        """Send the credits, each before the next verdict is asked for; count the judgements
        ignored, by reason."""
        for verdict in verdicts:
            if isinstance(verdict, Credit):
                await send_credit(verdict)
            else:
                ignored.labels(reason=verdict).inc()

    async def count_usage(outcome: Outcome, partition: int, offset: int) -> None:
        """Fold ``outcome`` into the usage of every scope a budget tracks for its tenant."""
        budgets.refresh()
        pairs = tracked(budgets.policy.budgets, outcome.tenant)
        if not pairs:
            return
        await usage_read.wait()
        for scope, window in sorted(pairs):
            owner = scope_owner(scope, outcome.tenant, outcome.session_id, outcome.api_key)
            if owner is None:
                continue
            key = usage_key(scope, owner, window, partition)
            current = newer(usage_sent.get(key), usage_seen.get(key))
            record = fold_usage(current, outcome, scope, owner, window, partition, offset)
            if record is not None:
                usage_sent[key] = record
                # at once and acknowledged before the outcome's offset can be committed (an
                # attached send would wait for the next outcome): routers see the count within
                # milliseconds, and a crash before the commit reads it again, then skips it
                sent = await usage_topic.send(key=key.encode(), value=encode(record), force=True)
                await sent

    @app.task
    async def read_usage() -> None:
        """Follow ``wrp.usage``: after a restart or a rebalance, what the instance that counted
        a partition before published is where counting goes on."""
        nonlocal usage_seen
        while True:  # counting from nothing would let every scope start its window afresh
            table = CompactedTable(settings.broker, USAGE, Usage)
            usage_followed.append(table)  # closed on shutdown, caught up or not
            try:
                await table.start()
                await table.caught_up()
            except Exception:
                log.exception("learner: could not read wrp.usage; retrying before counting")
                usage_followed.remove(table)
                with contextlib.suppress(Exception):
                    await table.stop()
                await asyncio.sleep(1.0)
                continue
            usage_seen = table.values
            usage_read.set()
            return

    @app.timer(60.0)
    async def forget_ended_usage() -> None:
        """Delete (tombstone) the usage of windows that ended, so ``wrp.usage`` and the routers'
        view of it hold the live sessions, not every session there ever was."""
        at = time.time()
        gone = [
            key
            for key in {*usage_sent, *usage_seen}
            if (record := newer(usage_sent.get(key), usage_seen.get(key))) and ended(record, at)
        ]
        if not gone:
            return
        producer = new_producer(settings.broker)
        try:
            await producer.start()
            for key in gone:
                usage_sent.pop(key, None)
                await producer.send_and_wait(USAGE, None, key=key.encode())
        except Exception:  # a timer that raises stops the worker: try again next round
            log.exception("learner: could not delete the usage of ended windows")
        finally:
            await producer.stop()

    @app.agent(outcomes)
    async def remember_outcomes(stream: faust.StreamT) -> None:
        async for event in stream.events():
            metrics.processed.inc()
            outcome = await read(event, Outcome)
            if outcome is None:
                continue
            partition, offset = event.message.partition, event.message.offset
            if join.first_reading(outcome, offset):  # unless its usage was published already
                await count_usage(outcome, partition, offset)
            await credit(join.outcome(outcome, offset))

    @app.agent(feedback)
    async def credit_feedback_agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            metrics.processed.inc()
            item = await read(event, Feedback)
            if item is None:
                continue
            verdict = join.feedback(item, time.time())
            if verdict is not None:
                await credit([verdict])

    @app.timer(HEARTBEAT_S)
    async def beat() -> None:
        """Say on ``wrp.stage-health`` what state the learner is in."""
        alive = heartbeat(STAGE, [STAGE], str(status["state"]), instance)
        await health.send(key=alive.key.encode(), value=encode(alive))

    published: dict[str, RouterState] = {}
    read_published = asyncio.Event()

    @app.task
    async def read_router_state() -> None:
        """The arms as last published (or restored), for arms the table does not hold."""
        table = CompactedTable(settings.broker, ROUTER_STATE, RouterState)
        try:
            await table.start()
            await table.caught_up()
            published.update(table.values)
        except Exception:  # fold on from scratch rather than never
            log.exception("learner: could not read wrp.router-state; arms start afresh")
        finally:
            await table.stop()
            read_published.set()

    @app.agent(credits)
    async def fold_credits(stream: faust.StreamT) -> None:
        await read_published.wait()
        async for event in stream.events():
            metrics.processed.inc()
            credit = await read(event, Credit)
            if credit is None:
                continue
            key = f"{credit.decision}/{credit.model}"
            current = arms.get(key)
            previous = RouterState.model_validate(current) if current else published.get(key)
            state = fold(previous, credit, learning.half_life_s)
            arms[key] = state.model_dump()
            await router_state.send(key=key.encode(), value=encode(state))

    @app.task
    async def serve_health() -> None:
        """``/healthz`` and ``/metrics`` as every stage serves them, from when faust starts
        its tasks: once its tables are recovered, as it started its own web server."""
        task, server = await serve_http(
            health_app(STAGE, metrics, status),
            settings.stage_port(STAGE) if port is None else port,
            settings.http_host,
        )
        servers.append((task, server))
        if status["state"] == "stopping":  # asked to stop while the server started
            server.should_exit = True
        else:
            status["state"] = "running"

    @app.on_before_shutdown.connect
    async def close(sender: Any, **kwargs: Any) -> None:
        """Once faust has drained its streams: close what the learner opened itself."""
        status["state"] = "stopping"
        for table in usage_followed:
            try:
                await table.stop()
            except Exception:  # the rest of the shutdown goes on
                log.exception("learner: could not close its follower of wrp.usage")
        for task, server in servers:
            server.should_exit = True
            await asyncio.wait({task}, timeout=5)

    return app


class LearnerWorker(faust.Worker):
    """faust's worker, saying "stopping" as soon as it is asked to stop (before faust drains
    its streams), as the runner's stages do."""

    def __init__(self, app: faust.App, status: dict[str, object], **kwargs: Any) -> None:
        self.status = status
        super().__init__(app, **kwargs)

    async def on_stop(self) -> None:
        self.status["state"] = "stopping"
        await super().on_stop()


def run_learner(settings: Settings, port: int | None = None) -> None:
    """Run the learner until SIGTERM/SIGINT (faust's worker drains and commits)."""
    status: dict[str, object] = {"state": "starting"}
    app = build_learner(settings, port, status)
    worker = LearnerWorker(app, status, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
