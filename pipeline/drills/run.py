"""``wrp drill NAME``: a trust drill on an embedded stack of its own (a fresh state directory
under ``<state-dir>/drill``), with its report as JSON."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil

from pipeline.drills.fuzz import fuzz_drill
from pipeline.drills.pii_at_rest import pii_drill
from pipeline.drills.restarts import restart_drill
from pipeline.settings import Settings
from pipeline.stack import Stack

DRILLS = ("fuzz", "restart", "pii")


def run_drills(
    settings: Settings, names: list[str], count: int, restarts: int, per_round: int, seed: int
) -> dict:
    settings = settings.model_copy(update={"state_dir": settings.state_dir / "drill"})
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    stack = Stack(settings, broker_port=int(settings.broker.rsplit(":", 1)[1]))
    report: dict = {
        "setup": {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "stack": "embedded: Tansu (memory storage), one process per stage, simulated pools, "
            "chdb",
            "policy": str(settings.policy),
            "learned_signals": settings.learned_signals,
        }
    }
    stack.start()
    try:
        for name in names:
            print(f"drill {name} ...", flush=True)
            if name == "fuzz":
                report[name] = asyncio.run(fuzz_drill(stack, count, seed))
            elif name == "restart":
                report[name] = restart_drill(stack, restarts, per_round)
            else:
                report[name] = pii_drill(stack)
    finally:
        stack.stop()
    report["passed"] = all(report[name]["passed"] for name in names)
    return report
