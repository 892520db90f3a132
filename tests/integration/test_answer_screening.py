"""Screening the answer through the real pipeline: a pool's answer carrying PII (the simulator's
``sim_answer``) reaches the client redacted, whole or streamed; an answer complying with a request
the safety stage scored as an attack is blocked; the verdict lands in ClickHouse next to the
request's."""

from __future__ import annotations

import openai
import pytest
import yaml

from pipeline.analytics.access import query_analytics
from pipeline.client import replay
from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.policy import AnswerScreening
from tests.integration.conftest import API_KEY, run
from tests.integration.helpers import analytics_row, eventually
from tests.integration.test_routing import policy_edit

pytestmark = pytest.mark.integration

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
ASK = [{"role": "user", "content": "What is on file for my account?"}]


@pytest.fixture(scope="module")
def client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=API_KEY, max_retries=0)


def answer_row(stack, request_id: str) -> dict:
    return eventually(
        lambda: (row := analytics_row(stack, request_id)) and row["answer_action"] and row,
        what="the request's row with its answer verdict",
    )


def test_a_whole_answer_reaches_the_client_with_its_pii_redacted(stack, client):
    answer = f"On file: card {CARD}, email {EMAIL}, nothing else."
    raw = client.chat.completions.with_raw_response.create(
        model="wrp-small-8b", messages=ASK, extra_body={"sim_answer": answer}
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == (
        "On file: card <CREDIT_CARD>, email <EMAIL_ADDRESS>, nothing else."
    )
    assert completion.choices[0].finish_reason == "stop"
    row = answer_row(stack, raw.headers["x-wrp-request-id"])
    assert row["safety_action"] == "allow"  # the request itself carried nothing
    assert row["answer_action"] == "redact" and row["answer_redacted"] == 2
    assert sorted(row["answer_pii_entities"]) == ["CREDIT_CARD", "EMAIL_ADDRESS"]
    assert not row["answer_attack_complied"]


def test_a_streamed_answer_is_redacted_across_windows_before_the_client_sees_it(stack, client):
    # the card straddles a window boundary (at 128 characters: windows of 64, window_chars)
    lead = "word " * 24  # 120 characters
    answer = f"{lead}card {CARD} and then" + " more text" * 60
    raw = client.chat.completions.with_raw_response.create(
        model="wrp-small-8b",
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"sim_answer": answer},
    )
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.replace(CARD, "<CREDIT_CARD>")
    assert "4111" not in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].usage is not None  # the usage chunk comes after the held text
    row = answer_row(stack, raw.headers["x-wrp-request-id"])
    assert (row["answer_action"], row["answer_redacted"]) == ("redact", 1)
    assert row["answer_pii_entities"] == ["CREDIT_CARD"]


def test_answer_screening_is_counted_per_tenant_and_day(stack, client):
    raw = client.chat.completions.with_raw_response.create(
        model="wrp-small-8b", messages=ASK, extra_body={"sim_answer": "SSN 078-05-1120 ok"}
    )
    assert "<US_SSN>" in raw.parse().choices[0].message.content
    answer_row(stack, raw.headers["x-wrp-request-id"])
    result = query_analytics(stack.settings, "answer_screening", {"tenant": "acme"})
    rows = [dict(zip(result["columns"], r, strict=True)) for r in result["rows"]]
    assert rows and all(r["tenant"] == "acme" for r in rows)
    today = rows[-1]
    assert today["answers_screened"] >= today["redacted"] >= 1
    assert "pii:US_SSN" in today["reasons"]


def answered(stack, text: str, answer: str, tenant: str) -> Envelope:
    body = ChatRequest(
        model="wrp-small-8b", messages=[{"role": "user", "content": text}], sim_answer=answer
    )
    section = RequestSection(body=body, tenant=tenant)
    answers = run(replay(stack.settings.broker, [section], rate=0, timeout_s=60))
    return answers[section.request_id]


def test_an_answer_complying_with_a_request_scored_as_an_attack_is_blocked(stack):
    # every request the detectors read counts as an attack (attack_score 0: dispatch reloads the
    # policy; the safety stage's scores are what the request really got), and the tenant blocks
    path = stack.settings.policy
    with policy_edit(path) as data:
        answers = data["safety"]["answers"]
        answers["attack_score"] = 0.0
        answers["tenants"] = {"redteam": {"attack_complied": "block"}}
        path.write_text(yaml.safe_dump(data))

        def complied() -> Envelope | None:
            env = answered(stack, "Tell me about tides", "Sure, here it is.", "redteam")
            screen = env.result.screen if env.result else None
            return env if screen and screen.attack_complied else None

        env = eventually(complied, what="dispatch running the edited policy")
        refused = answered(stack, "Tell me about tides", "I can't help with that.", "redteam")
    assert env.safety.action == "allow" and env.safety.hits  # the request itself passed
    assert env.result.status == "ok" and env.result.screen.action == "block"
    choice = env.result.response["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == AnswerScreening().refusal
    assert not refused.result.screen.attack_complied and refused.result.screen.action == "allow"
    assert refused.result.response["choices"][0]["message"]["content"] == "I can't help with that."
    row = answer_row(stack, env.request.request_id)
    assert (row["answer_action"], row["answer_attack_complied"]) == ("block", True)
    assert row["answer_triggers"] == ["attack_complied"] and row["safety_action"] == "allow"
