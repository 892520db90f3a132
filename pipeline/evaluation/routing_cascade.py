"""Part 1 of ``wrp eval routing`` on GSM8K: the cascade (weak first, escalate when its recorded
answer fails a check) climbed on the recorded answers."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.routing_benches import STRONG
from pipeline.evaluation.routing_replay import CASCADE_CHECKS, ROUTER_SEED, Bench, build_policy
from pipeline.policy import SignalsConfig
from pipeline.pool.ladder import Ladder
from pipeline.router.route import RouterRuntime, route


@dataclass(frozen=True)
class RecordedAnswer:
    """A model's recorded answer, as the dispatch ladder reads a call."""

    response: dict[str, Any]
    relayed: bool = False
    error_type: str | None = None


async def recorded_answer(frame: pd.DataFrame, row: int, model: str) -> RecordedAnswer:
    """``model``'s recorded answer to ``row`` (a missing one is empty)."""
    text = frame.at[row, f"{model}_response"]
    content = text if isinstance(text, str) else ""
    return RecordedAnswer({"choices": [{"message": {"content": content}}]})


def cascade(bench: Bench, frame: pd.DataFrame, signals: SignalsConfig) -> dict:
    """The cascade decision's ladder, climbed on the recorded answers as dispatch climbs it
    (:class:`~pipeline.pool.ladder.Ladder`): a rung's answer that fails a check escalates to the
    next rung; every call is paid."""
    rows = np.flatnonzero(~bench.train)
    policy = build_policy(signals, bench.cards(), "cascade")
    runtime = RouterRuntime(rng=np.random.default_rng(ROUTER_SEED))
    position = {model: i for i, model in enumerate(bench.models)}
    served, spent, strong_calls = [], [], 0
    for row in rows:
        decision = route(bench.envelope(int(row)), policy, runtime)
        answers = functools.partial(recorded_answer, frame, int(row))
        climb = asyncio.run(Ladder.of(decision, policy).climb(answers))
        strong_calls += sum(model == STRONG for model, _ in climb.calls)
        spent.append(sum(bench.cost[row, position[model]] for model, _ in climb.calls))
        served.append(bench.correct[row, position[climb.model]])
    return {
        "checks": CASCADE_CHECKS,
        "strong_share": round(strong_calls / len(rows), 4),
        "cost_share": round(float(np.mean(spent) / bench.cost[rows, 1].mean()), 4),
        "accuracy": round(float(np.mean(served)), 4),
    }
