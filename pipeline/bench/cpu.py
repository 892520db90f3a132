"""CPU time of the embedded stack's processes, for benchmarks: each process's user + system
time from ``/proc/<pid>/stat`` (children excluded), sampled before and after a measured span."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.stack import Stack

TICKS = os.sysconf("SC_CLK_TCK")
#: Processes that are not WRP's own: the simulated pools and the load generator (this process).
NOT_WRP = ("sim", "loadgen")


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def stack_pids(stack: Stack) -> dict[str, int]:
    """Every process of the stack, the broker and this load generator, by name."""
    pids = {name: proc.pid for name, proc in stack.processes.items()}
    if stack.broker is not None:
        pids["broker"] = stack.broker.pid
    pids["loadgen"] = os.getpid()
    return pids


@dataclass
class CpuSpan:
    """CPU seconds each process spent between :meth:`start` and :meth:`stop`."""

    pids: dict[str, int]

    def start(self) -> CpuSpan:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}


def per_request_ms(spent: dict[str, float], requests: int) -> dict[str, float]:
    """CPU-ms per request of each process, WRP's own total (pools and load generator apart)."""
    per = {name: round(s * 1000 / max(requests, 1), 2) for name, s in sorted(spent.items())}
    per["wrp_total"] = round(sum(v for k, v in per.items() if k not in NOT_WRP), 2)
    return per


def per_second_ms(spent: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU-ms per second of each process, WRP's own total apart."""
    per = {name: round(s * 1000 / seconds, 1) for name, s in sorted(spent.items())}
    per["wrp_total"] = round(sum(v for k, v in per.items() if k not in NOT_WRP), 1)
    return per
