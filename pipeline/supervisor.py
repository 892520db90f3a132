"""Keeping the embedded stack's children running: a child that exits is started again after a
backoff (1 s, doubling to 60 s; back to 1 s once a child has run for a minute), and every exit
and restart is said. ``wrp up`` runs one; the broker is not restarted (its memory storage is
gone with it), so its exit stops the stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.stack import Stack

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
#: A child that ran this long before exiting is restarted after the first backoff again.
STEADY_S = 60.0


class BrokerExited(RuntimeError):
    pass


@dataclass
class _Child:
    args: list[str]
    started: float
    backoff: float = FIRST_BACKOFF_S
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Watches ``stack.processes``; :meth:`check` is called periodically and returns what it
    did, one line per event."""

    stack: Stack
    clock: Callable[[], float] = time.monotonic
    children: dict[str, _Child] = field(default_factory=dict)

    def check(self) -> list[str]:
        stack = self.stack
        now = self.clock()
        events: list[str] = []
        broker = stack.broker
        if broker is not None and broker.poll() is not None:
            raise BrokerExited(
                f"the broker exited ({broker.returncode}); its memory storage is gone, so the "
                f"stack stops: see {stack.log_dir}/broker.log"
            )
        for name, proc in list(stack.processes.items()):
            child = self.children.setdefault(name, _Child(stack.commands[name], now))
            if proc.poll() is None or child.restart_at is not None:
                continue
            if now - child.started >= STEADY_S:
                child.backoff = FIRST_BACKOFF_S
            child.restart_at = now + child.backoff
            events.append(
                f"{name} exited ({proc.returncode}); restarting in {child.backoff:g}s "
                f"(log: {stack.log_dir}/{name}.log)"
            )
        for name, child in self.children.items():
            if child.restart_at is None or now < child.restart_at:
                continue
            proc = stack.spawn(name, child.args)
            child.restart_at, child.started = None, now
            child.restarts += 1
            child.backoff = min(child.backoff * 2, MAX_BACKOFF_S)
            events.append(f"{name} restarted (pid {proc.pid}, restart {child.restarts})")
        return events
