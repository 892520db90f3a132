"""Implicit feedback through the real broker: a user who keeps telling one model in a session
that its answers are wrong, and never clicks a thumb, moves the learner's evidence for that
model; the labels land in ClickHouse."""

from __future__ import annotations

import pytest
import yaml

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import FEEDBACK, ROUTER_STATE
from pipeline.bus.codec import decode
from pipeline.client import replay
from pipeline.envelope import ChatRequest, Envelope, Feedback, RequestSection, RouterState
from tests.integration.conftest import run
from tests.integration.helpers import eventually, read_topic
from tests.integration.test_routing import policy_edit, reloaded

pytestmark = pytest.mark.integration

TENANT = "implicit-test"
MODEL = "wrp-small-8b"
DECISION = "implicit_test"
COMPLAINTS = ["That's wrong.", "No, that is not correct either.", "That's still wrong!"]


def arm(stack) -> RouterState | None:
    records = run(read_topic(stack.settings.broker, ROUTER_STATE))
    states = [decode(r.value, RouterState) for r in records]
    latest = [s for s in states if (s.decision, s.model) == (DECISION, MODEL)]
    return max(latest, key=lambda s: s.version) if latest else None


def ask(stack, session: str, messages: list[dict]) -> Envelope:
    request = RequestSection(tenant=TENANT, session_id=session, body=ChatRequest(messages=messages))
    answers = run(replay(stack.settings.broker, [request], rate=0, timeout_s=90))
    return answers[request.request_id]


def test_next_turns_that_say_the_answer_is_wrong_teach_the_learner_without_any_thumbs(stack):
    path = stack.settings.policy
    with policy_edit(path) as data:
        data["router"]["decisions"].append(
            {
                "name": DECISION,
                "priority": 1002,
                "when": {"all": [{"signal": "tenant", "equals": TENANT}]},
                "models": [MODEL],
                "strategy": "static",
            }
        )
        path.write_text(yaml.safe_dump(data))
        reloaded(stack, path)
        before = arm(stack)
        # a conversation as an OpenAI client sends it: the whole history every turn
        messages = [{"role": "user", "content": "What is the capital of Australia?"}]
        served = []
        for turn in range(len(COMPLAINTS) + 1):
            env = ask(stack, "implicit-session-1", messages)
            assert (env.decision.decision, env.decision.model) == (DECISION, MODEL)
            served.append(env.request.request_id)
            answer = env.result.response["choices"][0]["message"]["content"]
            if turn < len(COMPLAINTS):  # each answer is followed by a complaint
                messages += [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": COMPLAINTS[turn]},
                ]

    # every judgement of these requests is implicit: nobody sent feedback
    records = run(read_topic(stack.settings.broker, FEEDBACK))
    judged = [decode(r.value, Feedback) for r in records]
    judged = {f.request_id: f for f in judged if f.request_id in served}
    assert {f.source for f in judged.values()} == {"implicit"}
    # the last request has no next turn yet, so it is not judged
    assert {rid: judged[rid].implicit for rid in served[:-1]} == {
        served[0]: "says_wrong",
        served[1]: "says_wrong",
        served[2]: "says_wrong",
    }
    assert all(f.tenant == TENANT and f.score == 0.0 for f in judged.values())

    base_failures = before.failures if before else 0.0
    base_observations = before.observations if before else 0
    state = eventually(
        lambda: (s := arm(stack)) and s.observations >= base_observations + 3 and s,
        what="the learner folding the implicit judgements",
    )
    # three complaints at the default implicit weight (0.3) each, and nothing else
    assert state.observations == base_observations + 3
    assert state.failures == pytest.approx(base_failures + 3 * 0.3, abs=1e-3)

    def labels() -> dict | None:
        result = query_analytics(
            stack.settings, "implicit_feedback", {"tenant": TENANT, "since": "1h"}
        )
        rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        return rows[0] if rows and rows[0]["says_wrong"] >= 3 else None

    row = eventually(labels, what="implicit labels in ClickHouse")
    assert (row["tenant"], row["decision"], row["model"]) == (TENANT, DECISION, MODEL)
    assert (row["judged"], row["says_wrong"], row["moved_on"], row["mean_reward"]) == (
        3,
        3,
        0,
        0.0,
    )
