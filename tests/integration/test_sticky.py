"""Sticky sessions through the real pipeline: a session's turns stay on one model where a
Thompson decision free to explore alternates between two equally rated models, and ClickHouse
records the turns held and the switches."""

from __future__ import annotations

import itertools

import pytest
import yaml

from pipeline.analytics.access import query_analytics
from pipeline.client import replay
from pipeline.envelope import ChatRequest, RequestSection
from tests.integration.conftest import run
from tests.integration.helpers import eventually
from tests.integration.test_routing import policy_edit, reloaded

pytestmark = pytest.mark.integration

STICKY, UNSTICKY = "sticky-test", "unsticky-test"
MODELS = ["wrp-small-8b", "wrp-coder-32b"]
TURNS = 20


def alternating_decision(tenant: str, sticky: bool) -> dict:
    """Thompson between two models the policy rates alike (the same quality priors, cost not
    weighed), exploration unbounded: every draw is a coin flip."""
    return {
        "name": tenant.replace("-", "_"),
        "priority": 1000,
        "when": {"all": [{"signal": "tenant", "equals": tenant}]},
        "models": MODELS,
        "strategy": "thompson",
        "cost_weight": 0.0,
        "exploration": {"floor": 0.0, "ceiling": 1.0},
        "sticky": {"enabled": sticky},
    }


def session(tenant: str) -> list[RequestSection]:
    """One session's turns, each carrying the conversation so far (sent in order: one key)."""
    history: list[dict] = []
    turns = []
    for i in range(TURNS):
        history = [*history, {"role": "user", "content": f"Suggest a name for goldfish {i}."}]
        body = ChatRequest(messages=history)
        turns.append(RequestSection(tenant=tenant, session_id=f"{tenant}-session", body=body))
        history.append({"role": "assistant", "content": f"Bubbles {i}."})
    return turns


def test_a_session_stays_on_one_model_where_the_policy_alternates(stack):
    path = stack.settings.policy
    with policy_edit(path) as data:
        cards = {card["name"]: card for card in data["models"]}
        cards[MODELS[1]]["quality"] = cards[MODELS[0]]["quality"]
        data["router"]["decisions"] += [
            alternating_decision(STICKY, True),
            alternating_decision(UNSTICKY, False),
        ]
        path.write_text(yaml.safe_dump(data))
        reloaded(stack, path)
        answers = {
            tenant: sorted(
                run(replay(stack.settings.broker, session(tenant), rate=0, timeout_s=90)).values(),
                key=lambda env: len(env.request.body.messages),
            )
            for tenant in (STICKY, UNSTICKY)
        }
    held, free = answers[STICKY], answers[UNSTICKY]
    assert all(env.result.status == "ok" for env in held + free)

    free_models = [env.decision.model for env in free]
    assert len(set(free_models)) == 2, "without stickiness the draws move the session"
    switches = sum(a != b for a, b in itertools.pairwise(free_models))
    assert sum(bool(env.decision.switched_from) for env in free) == switches

    assert len({env.decision.model for env in held}) == 1
    assert not any(env.decision.switched_from for env in held)
    assert any(env.decision.sticky for env in held), "some draws should have been held back"

    def stored(tenant: str) -> dict | None:
        result = query_analytics(
            stack.settings, "session_switches", {"since": "1h", "tenant": tenant}
        )
        rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        return rows[0] if rows and rows[0]["session_turns"] == TURNS else None

    sticky_row = eventually(lambda: stored(STICKY), what="the sticky session in analytics")
    assert (sticky_row["sessions"], sticky_row["switches"]) == (1, 0)
    assert sticky_row["held_pct"] == round(
        100 * sum(env.decision.sticky for env in held) / TURNS, 1
    )
    free_row = eventually(lambda: stored(UNSTICKY), what="the free session in analytics")
    assert (free_row["switches"], free_row["held_pct"]) == (switches, 0)
