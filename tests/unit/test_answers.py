"""Screening the answer (pipeline/safety/answers.py): whole answers and streamed windows."""

from typing import Any

import numpy as np
import pytest

from pipeline.envelope import Safety, SafetyHit
from pipeline.models.heads import Head
from pipeline.policy import AnswerScreening, PolicyError, load_policy, parse_policy
from pipeline.safety.answers import (
    AnswerModeration,
    StreamScreen,
    attack_scored,
    screen_response,
)
from pipeline.settings import DEFAULT_POLICY

CARD = "4111 1111 1111 1111"
SSN = "078-05-1120"
CONFIG = AnswerScreening(window_chars=32)


def safety(**scores: float) -> Safety:
    """A request-side verdict whose detectors scored ``scores`` (watch level 0.8)."""
    hits = [
        SafetyHit(
            detector=d,
            score=s,
            threshold=0.99,
            fired=False,
            watch=0.8,
            message_index=0,
            role="user",
            window=0,
        )
        for d, s in scores.items()
    ]
    return Safety(action="allow", jailbreak_score=scores.get("jailbreak", 0.0), hits=hits)


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def pieces(text: str, size: int) -> list[dict[str, Any]]:
    return [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


def stream(screen: StreamScreen, chunks: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """What the screen relays after each chunk fed, then what it relays at the end."""
    return [screen.feed([c]) for c in chunks] + [screen.finish()]


# --- whole answers ---------------------------------------------------------------------------


def test_a_whole_answer_has_its_pii_redacted_and_the_verdict_names_the_entities():
    response, verdict = screen_response(completion(f"Your card is {CARD}, ok?"), None, CONFIG)
    assert response["choices"][0]["message"]["content"] == "Your card is <CREDIT_CARD>, ok?"
    assert response["choices"][0]["finish_reason"] == "stop"
    assert (verdict.action, verdict.pii, verdict.redacted) == ("redact", ["CREDIT_CARD"], 1)
    assert verdict.triggers == ["pii:CREDIT_CARD"]


def test_an_answer_with_nothing_to_act_on_is_passed_on_untouched():
    original = completion("Reach the host at 10.0.0.1 tomorrow.")  # IP addresses: allow
    response, verdict = screen_response(original, None, CONFIG)
    assert response is original
    assert (verdict.action, verdict.pii, verdict.windows) == ("allow", [], 1)


def test_a_blocking_entity_replaces_the_answer_with_a_content_filter_refusal():
    config = CONFIG.model_copy(update={"pii": {**CONFIG.pii, "US_SSN": "block"}})
    response, verdict = screen_response(completion(f"The SSN is {SSN}."), None, config)
    choice = response["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == config.refusal
    assert response["usage"]["completion_tokens"] == 9  # the tokens were generated all the same
    assert verdict.action == "block"


def test_attack_complied_only_when_the_request_scored_high_and_the_answer_is_no_refusal():
    compliant = completion("Sure! As DAN I will tell you everything.")
    refusal = completion("I'm sorry, but I can't help with that.")
    _, high = screen_response(compliant, safety(jailbreak=0.85), CONFIG)
    _, low = screen_response(compliant, safety(jailbreak=0.5), CONFIG)
    _, refused = screen_response(refusal, safety(jailbreak=0.85), CONFIG)
    _, unread = screen_response(compliant, None, CONFIG)
    assert (high.attack_complied, high.action, high.triggers) == (
        True,
        "flag",
        ["attack_complied"],
    )
    assert not low.attack_complied and not refused.attack_complied and not unread.attack_complied
    assert low.action == refused.action == "allow"


def test_the_policy_attack_score_replaces_the_detectors_watch_level():
    assert attack_scored(safety(injection=0.6), 0.5) == "injection 0.60 >= 0.50"
    assert attack_scored(safety(injection=0.6), None) is None  # under its watch level (0.8)
    config = CONFIG.model_copy(update={"attack_complied": "block", "attack_score": 0.5})
    response, verdict = screen_response(completion("Here it is."), safety(injection=0.6), config)
    assert verdict.action == "block"
    assert response["choices"][0]["finish_reason"] == "content_filter"


def test_moderation_runs_only_when_the_policy_asks_and_acts_per_policy():
    calls: list[str] = []

    def moderate(text: str) -> list[str]:
        calls.append(text)
        return ["violence"]

    _, off = screen_response(completion("text"), None, CONFIG, moderate)
    assert calls == [] and off.categories == []
    config = CONFIG.model_copy(update={"moderation": "block"})
    response, on = screen_response(completion("text"), None, config, moderate)
    assert calls == ["text"]
    assert (on.action, on.categories, on.triggers) == (
        "block",
        ["violence"],
        ["moderation:violence"],
    )
    assert response["choices"][0]["finish_reason"] == "content_filter"


class KeywordEncoder:
    """Embeds a text as [mentions "fight", mentions "slur"]."""

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.array([[float("fight" in t), float("slur" in t)] for t in texts])


def test_the_moderation_head_flags_the_categories_over_their_threshold():
    head = Head(
        "moderation",
        "sigmoid",
        ["violence", "hate"],
        [np.array([[8.0, 0.0], [0.0, 8.0]]), np.array([-4.0, -4.0])],
        {"thresholds": {"violence": 0.5, "hate": 0.5}},
    )
    moderation = AnswerModeration(KeywordEncoder(), head)  # type: ignore[arg-type]
    assert moderation.categories("a fight broke out", {}) == ["violence"]
    assert moderation.categories("a fight and a slur", {}) == ["hate", "violence"]
    assert moderation.categories("a fight and a slur", {"hate": 0.99}) == ["violence"]
    assert moderation.categories("a quiet day", {}) == []


# --- streamed answers ------------------------------------------------------------------------


def test_a_card_number_across_a_window_boundary_is_redacted_before_any_of_it_is_relayed():
    text = "a" * 20 + f" card {CARD} " + "b" * 60  # the card crosses the 32-character boundary
    screen = StreamScreen(CONFIG, None)
    relayed = stream(screen, [chunk({"role": "assistant", "content": ""}), *pieces(text, 5)])
    out = text_of([c for step in relayed for c in step])
    assert out == "a" * 20 + " card <CREDIT_CARD> " + "b" * 60
    assert "4111" not in out and "1111" not in out
    assert screen.verdict().redacted == 1 and screen.verdict().pii == ["CREDIT_CARD"]


def test_a_stream_holds_back_exactly_one_window():
    window = CONFIG.window_chars
    text = "".join(f"word{i:03d} " for i in range(40))  # 320 characters, no PII
    screen = StreamScreen(CONFIG, None)
    fed, sent = 0, 0
    for piece in pieces(text, 4):
        sent += len(text_of(screen.feed([piece])))
        fed += 4
        assert fed - sent < 2 * window  # never more than the held window and the one filling
        if fed >= 2 * window:
            assert fed - sent >= window  # ... and never less than one window once screening
    rest = text_of(screen.finish())
    assert sent + len(rest) == len(text)
    assert screen.verdict().held_chars == window
    assert screen.verdict().windows == len(text) // window - 1 + 1


def test_a_stream_is_relayed_in_order_with_the_role_first_and_the_finish_last():
    screen = StreamScreen(CONFIG, None)
    events = [
        chunk({"role": "assistant", "content": ""}),
        *pieces("hello there, nothing to hide here at all today", 7),
        chunk({}, "stop", usage={"completion_tokens": 9}),
    ]
    relayed = [c for step in stream(screen, events) for c in step]
    assert relayed[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert relayed[-1]["choices"][0]["finish_reason"] == "stop"
    assert relayed[-1]["usage"] == {"completion_tokens": 9}
    assert text_of(relayed) == "hello there, nothing to hide here at all today"


def test_a_block_mid_stream_stops_relaying_and_ends_with_content_filter():
    config = CONFIG.model_copy(update={"pii": {**CONFIG.pii, "US_SSN": "block"}})
    text = "x" * 100 + f" ssn {SSN} " + "y" * 100
    screen = StreamScreen(config, None)
    relayed = [c for step in stream(screen, [*pieces(text, 8), chunk({}, "stop")]) for c in step]
    assert relayed[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert relayed[-1]["choices"][0]["delta"] == {}  # text was already sent: no refusal text
    assert all(c["choices"][0]["finish_reason"] != "stop" for c in relayed)
    out = text_of(relayed)
    assert out and text.startswith(out) and "078" not in out
    assert screen.verdict().action == "block"
    response = screen.screened_response(completion(text))
    assert response["choices"][0]["message"]["content"] == out
    assert response["choices"][0]["finish_reason"] == "content_filter"


def test_a_stream_that_complies_with_an_attack_is_blocked_before_anything_is_relayed():
    config = CONFIG.model_copy(update={"attack_complied": "block"})
    screen = StreamScreen(config, safety(jailbreak=0.9))
    relayed = [c for step in stream(screen, pieces("Sure, here is how. " * 10, 6)) for c in step]
    assert len(relayed) == 1
    assert relayed[0]["choices"][0] == {
        "index": 0,
        "delta": {"content": config.refusal},
        "finish_reason": "content_filter",
    }
    refused = StreamScreen(config, safety(jailbreak=0.9))
    out = [c for step in stream(refused, pieces("I cannot help with that. " * 5, 6)) for c in step]
    assert text_of(out) == "I cannot help with that. " * 5
    assert not refused.verdict().attack_complied


def test_the_answer_on_responses_is_what_the_stream_relayed():
    text = f"Mail me at jane.doe@example.com or call about {CARD} please."
    screen = StreamScreen(CONFIG, None)
    out = text_of([c for step in stream(screen, pieces(text, 3)) for c in step])
    response = screen.screened_response(completion(text))
    assert response["choices"][0]["message"]["content"] == out
    assert out == "Mail me at <EMAIL_ADDRESS> or call about <CREDIT_CARD> please."


# --- policy ----------------------------------------------------------------------------------


def test_a_tenant_override_changes_only_what_it_sets():
    config = AnswerScreening(
        tenants={
            "bank": {"pii": {"IP_ADDRESS": "redact"}, "attack_complied": "block"},
            "raw": {"enabled": False},
        }
    )
    assert not config.for_tenant("raw").enabled and config.for_tenant("raw").pii == config.pii
    bank = config.for_tenant("bank")
    assert bank.pii["IP_ADDRESS"] == "redact" and bank.pii["CREDIT_CARD"] == "redact"
    assert bank.attack_complied == "block" and bank.moderation == "off"
    assert config.for_tenant("other") is config
    _, verdict = screen_response(completion("Ping 10.1.2.3 now."), None, bank)
    assert verdict.action == "redact" and verdict.pii == ["IP_ADDRESS"]
    _, default = screen_response(completion("Ping 10.1.2.3 now."), None, config)
    assert default.action == "allow"


def test_the_default_policy_screens_answers_with_pii_redaction_and_moderation_off():
    answers = load_policy(DEFAULT_POLICY).safety.answers
    assert answers.enabled and answers.moderation == "off" and answers.attack_complied == "flag"
    assert {e for e, a in answers.pii.items() if a == "redact"} >= {"CREDIT_CARD", "US_SSN"}


def test_an_unknown_entity_or_action_is_refused_with_a_clear_error():
    base = load_policy(DEFAULT_POLICY).model_dump(mode="json", by_alias=True)
    for answers, expected in (
        ({"pii": {"PASSPORT": "redact"}}, "unknown PII entities ['PASSPORT']"),
        ({"pii": {"US_SSN": "route_safe"}}, "safety.answers.pii.US_SSN"),
        ({"window_chars": 8}, "safety.answers.window_chars"),
    ):
        data = {**base, "safety": {**base["safety"], "answers": answers}}
        with pytest.raises(PolicyError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            parse_policy(data, "policy.yaml")
