"""Screening the answer through the real pipeline: a pool's answer carrying PII (the simulator's
``sim_answer``) reaches the client redacted, whole or streamed, and the verdict lands in
ClickHouse next to the request's."""

from __future__ import annotations

import openai
import pytest

from pipeline.analytics.access import query_analytics
from tests.integration.conftest import API_KEY
from tests.integration.helpers import analytics_row, eventually

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
    # the card straddles the first 128-character window boundary (policy window_chars)
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
