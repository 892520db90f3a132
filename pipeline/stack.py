"""The embedded stack: broker, topics, simulated pools and one process per stage.

Used by ``wrp up``, ``wrp demo``, ``wrp bench`` and the integration-test fixtures. Every child is a
``wrp`` subprocess with its log in ``<state_dir>/logs``. Starting re-seeds router-state and the
semantic cache from the analytics store (the broker starts empty). Stopping closes the gateway,
waits until every running stage has consumed what is on its topics (the broker's memory storage
dies with it, so anything left unread would be lost), then sends SIGTERM to each stage (it drains
and commits) and waits, the broker last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import httpx

from pipeline.api_keys import ApiKeys, first_key
from pipeline.bus.admin import create_topics
from pipeline.bus.broker import port_in_use, start_broker
from pipeline.bus.catalog import load_catalog
from pipeline.bus.lag import group_lag
from pipeline.bus.liveness import REQUEST_PATH
from pipeline.policy import Policy, load_policy
from pipeline.settings import STAGE_PORT_OFFSETS, Settings
from pipeline.stages.registry import consumed_topics

log = logging.getLogger(__name__)
#: Every stage as a process of its own: the deployment manifests' layout.
SEPARATE_STAGES = tuple(STAGE_PORT_OFFSETS)
#: The embedded default: the request path fused in one process (no hops between its parts),
#: the learner and the analytics sink apart.
FRONT = "signals+safety+router+dispatch"
STAGES = (FRONT, "learner", "analytics")


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    settings: Settings
    broker_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: the ``wrp`` arguments each child was started with (to start it again)
    commands: dict[str, list[str]] = field(default_factory=dict)
    broker: subprocess.Popen[bytes] | None = None
    simulate_latency: bool = True
    #: a key this stack created for tenant ``default`` because none was configured (shown once)
    api_key: str | None = None
    #: the stages started last (a restart starts the same)
    stages: tuple[str, ...] = STAGES

    @property
    def log_dir(self) -> Path:
        return self.settings.state_dir / "logs"

    @cached_property
    def policy(self) -> Policy:
        return load_policy(self.settings.policy)

    def env(self) -> dict[str, str]:
        """The children's environment: this stack's every setting, as its WRP_* variable."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        settings = self.settings.model_copy(
            update={
                "state_dir": self.settings.state_dir.resolve(),
                "policy": self.settings.policy.resolve(),
                "clickhouse": self.settings.clickhouse_dsn,
                "api_keys_file": self.settings.api_keys_file
                and self.settings.api_keys_file.resolve(),
                "model_dir": self.settings.model_dir and self.settings.model_dir.resolve(),
            }
        )
        for name, value in settings.model_dump().items():
            if value is None:  # unset: the children's default (e.g. keys under WRP_STATE_DIR)
                continue
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"WRP_{name.upper()}"] = text
        return env

    def start(
        self, stages: tuple[str, ...] | None = None, simulators: bool = True, gateway: bool = True
    ) -> None:
        """Start everything and return once every part answers its health check (the gateway its
        readiness, when the whole request path starts); ``stages`` defaults to those of the last
        start, else :data:`STAGES`."""
        stages = self.stages = stages or self.stages
        self.log_dir.mkdir(parents=True, exist_ok=True)
        policy = self.policy  # fail early on a broken policy
        self.check_ports(stages, simulators, gateway)
        self.broker = start_broker(self.broker_port, self.log_dir / "broker.log")
        asyncio.run(create_topics(self.settings.broker, load_catalog()))
        if "analytics" in stages:
            self.restore()
        if simulators and any(p.simulator for p in policy.pools):
            flags = [] if self.simulate_latency else ["--no-latency"]
            self.spawn("sim", ["sim", "--policy", str(self.settings.policy.resolve()), *flags])
        for stage in stages:
            self.spawn(stage, ["stage", stage])
        if gateway:
            self.api_key = first_key(self.settings)
            self.spawn("gateway", ["gateway"])
        self.wait_healthy(stages, simulators)

    def check_ports(self, stages: tuple[str, ...], simulators: bool, gateway: bool) -> None:
        """Raise a :class:`StackError` naming every port this stack needs that is taken."""
        wanted = {self.broker_port: "the broker (--broker / WRP_BROKER)"}
        if gateway:
            wanted[self.settings.gateway_port] = "the gateway (WRP_GATEWAY_PORT)"
        for stage in stages:
            port = self.settings.stage_port(stage)
            wanted[port] = f"the {stage} stage's /healthz (WRP_METRICS_PORT_BASE)"
        if simulators:
            for pool in self.policy.pools:
                if pool.simulator:
                    for endpoint in pool.endpoints:
                        port = httpx.URL(endpoint.url).port
                        if port is not None:
                            wanted[port] = f"pool {pool.name}'s simulator (the policy's endpoints)"
        taken = [f"{port} for {what}" for port, what in wanted.items() if port_in_use(port)]
        if taken:
            raise StackError(
                "port(s) in use: "
                + "; ".join(taken)
                + ". Another `wrp up` is probably running: stop it (Ctrl-C), or give this one "
                "other ports with the settings named"
            )

    def restore(self) -> None:
        """Re-seed router-state and the semantic cache from the analytics store's snapshots (the
        broker's memory storage starts empty); run apart because a chdb directory opens in one
        process only, and before the analytics stage takes it."""
        with open(self.log_dir / "restore.log", "ab") as log:
            done = subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "analytics", "restore"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        if done.returncode != 0:
            raise StackError(
                f"re-seeding from the analytics store failed:\n{self.log_tail('restore')}"
            )

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = proc
        self.commands[name] = args
        return proc

    def health_urls(self, stages: tuple[str, ...], simulators: bool) -> dict[str, str]:
        urls = {s: f"http://127.0.0.1:{self.settings.stage_port(s)}/healthz" for s in stages}
        if "gateway" in self.processes:
            # with the whole request path starting, wait until the gateway has heard each
            # stage's heartbeat: before that it answers a request 503, not ready
            whole_path = set(REQUEST_PATH) <= {part for s in stages for part in s.split("+")}
            urls["gateway"] = f"{self.gateway_url}/{'readyz' if whole_path else 'healthz'}"
        if simulators:
            for pool in self.policy.pools:
                if pool.simulator:
                    for i, ep in enumerate(pool.endpoints):
                        urls[f"sim {pool.name}[{i}]"] = f"{ep.url}/health"
        return urls

    def wait_healthy(
        self, stages: tuple[str, ...] | None = None, simulators: bool = True, timeout_s: float = 120
    ) -> None:
        stages = stages or self.stages
        pending = self.health_urls(stages, simulators)
        deadline = time.monotonic() + timeout_s
        while pending:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    tail = self.log_tail(name)
                    raise StackError(f"{name} exited with code {proc.returncode}:\n{tail}")
            for name, url in list(pending.items()):
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise StackError(f"not healthy after {timeout_s}s: {', '.join(pending)}")
            time.sleep(0.25)

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else "(no log)"
        )

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def drain(self, timeout_s: float = 60) -> int:
        """Wait until every running stage has consumed and committed everything on its topics;
        the records still unconsumed after ``timeout_s`` (0 when drained)."""
        topics = consumed_topics()
        groups = {  # a fused stage consumes what its first part does
            f"wrp-{name}": topics[name.split("+")[0]]
            for name, proc in self.processes.items()
            if name.split("+")[0] in topics and proc.poll() is None
        }

        async def lag() -> int:
            return sum([await group_lag(self.settings.broker, g, t) for g, t in groups.items()])

        deadline = time.monotonic() + timeout_s
        while (left := asyncio.run(lag())) and time.monotonic() < deadline:
            time.sleep(0.5)
        if left:
            log.warning(
                "stopping with %d records unconsumed after %gs; the embedded broker loses them",
                left,
                timeout_s,
            )
        return left

    def stop(self, drain_s: float = 60) -> None:
        """Stop the gateway, let the stages drain their topics (up to ``drain_s``), stop the
        stages front to back (each finishes its batch and commits), then sims, then the
        broker."""
        self.stop_process("gateway")
        if self.broker is not None and self.broker.poll() is None and drain_s > 0:
            try:
                self.drain(drain_s)
            except Exception as exc:  # a broker gone wrong must not keep the stack up
                log.warning("could not drain the stages before stopping: %r", exc)
        for name in [n for n in self.processes if n != "sim"]:  # in the order they started
            self.stop_process(name)
        for name in list(self.processes):
            self.stop_process(name)
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
        self.broker = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway_port}"

    def describe(self) -> str:
        lines = [f"broker      {self.settings.broker} (Tansu, memory storage)"]
        if "gateway" in self.processes:
            lines.append(f"gateway     {self.gateway_url}/v1 (OpenAI-compatible)")
            keys = self.settings.api_keys_path
            if self.api_key:
                lines.append(
                    f"api key     {self.api_key} (tenant default; shown once, only its digest "
                    f"is kept in {keys})"
                )
            elif self.settings.gateway_open and not ApiKeys.from_settings(self.settings).tenants:
                lines.append("api keys    none: the gateway is OPEN (WRP_GATEWAY_OPEN=true)")
            else:
                lines.append(f"api keys    {keys} (add one: wrp gateway key TENANT)")
        for pool in self.policy.pools:
            urls = ", ".join(e.url for e in pool.endpoints)
            kind = "simulated" if pool.simulator else "external"
            lines.append(f"pool        {pool.name:<8} {urls} ({kind})")
        for stage in self.stages:
            if stage in self.processes:
                port = self.settings.stage_port(stage)
                lines.append(f"stage       {stage:<10} http://127.0.0.1:{port}/healthz  /metrics")
        lines.append(f"analytics   {self.settings.clickhouse_dsn}")
        lines.append(f"logs        {self.log_dir}")
        return "\n".join(lines)
