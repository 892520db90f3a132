"""The embedded stack's supervisor: a child that exits is restarted with a growing backoff and
said so; the broker's exit stops the stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.supervisor import STEADY_S, BrokerExited, Supervisor


@dataclass
class Child:
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeStack:
    log_dir: Path = Path("/logs")
    broker: Child | None = field(default_factory=lambda: Child(1))
    processes: dict[str, Child] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    spawned: list[str] = field(default_factory=list)

    def spawn(self, name: str, args: list[str]) -> Child:
        self.spawned.append(name)
        self.processes[name] = Child(100 + len(self.spawned))
        self.commands[name] = args
        return self.processes[name]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_crashed_stage_is_restarted_after_a_backoff_that_doubles():
    stack, clock = FakeStack(), Clock()
    stack.spawn("router", ["stage", "router"])
    supervisor = Supervisor(stack, clock)
    assert supervisor.check() == []
    stack.processes["router"].returncode = -9
    (said,) = supervisor.check()
    assert said.startswith("router exited (-9); restarting in 1s")
    assert supervisor.check() == [] and stack.spawned == ["router"]
    clock.now = 1.0
    (said,) = supervisor.check()
    assert said.startswith("router restarted") and stack.spawned == ["router", "router"]
    assert stack.commands["router"] == ["stage", "router"]
    stack.processes["router"].returncode = 1  # crashes again at once: waits twice as long
    (said,) = supervisor.check()
    assert "restarting in 2s" in said
    clock.now = 2.5
    assert supervisor.check() == []
    clock.now = 3.0
    assert supervisor.check()[0].startswith("router restarted")


def test_a_child_that_ran_steadily_is_restarted_after_the_first_backoff_again():
    stack, clock = FakeStack(), Clock()
    stack.spawn("dispatch", ["stage", "dispatch"])
    supervisor = Supervisor(stack, clock)
    for _ in range(3):  # crash loops: the backoff grows to 8 s
        supervisor.check()
        stack.processes["dispatch"].returncode = 1
        supervisor.check()
        clock.now += 8
        supervisor.check()
    clock.now += STEADY_S
    stack.processes["dispatch"].returncode = 1
    (said,) = supervisor.check()
    assert "restarting in 1s" in said


def test_the_brokers_exit_stops_the_stack():
    stack = FakeStack()
    stack.broker.returncode = 137
    with pytest.raises(BrokerExited, match="memory storage is gone"):
        Supervisor(stack, Clock()).check()
