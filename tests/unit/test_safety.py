from pipeline.envelope import ChatRequest
from pipeline.policy import JailbreakConfig, PiiConfig, SafetyConfig
from pipeline.safety.pii import find_pii, redact
from pipeline.safety.screen import redact_request, screen

CONFIG = SafetyConfig(
    jailbreak=JailbreakConfig(threshold=0.5, action="block", examples=["x"]),
    pii=PiiConfig(
        action="redact",
        entities=[
            "EMAIL_ADDRESS",
            "US_SSN",
            "CREDIT_CARD",
            "IP_ADDRESS",
            "PHONE_NUMBER",
            "IBAN_CODE",
        ],
    ),
)


def entities(text: str) -> list[str]:
    return [s.entity for s in find_pii(text)]


def test_each_entity_is_found():
    assert entities("mail ana@example.org now") == ["EMAIL_ADDRESS"]
    assert entities("ssn 536-22-8741") == ["US_SSN"]
    assert entities("card 4111 1111 1111 1111") == ["CREDIT_CARD"]
    assert entities("host 10.24.8.17 down") == ["IP_ADDRESS"]
    assert entities("call 415-555-0132 today") == ["PHONE_NUMBER"]
    assert entities("IBAN DE89 3704 0044 0532 0130 00") == ["IBAN_CODE"]


def test_near_misses_are_not_pii():
    assert entities("card 4111 1111 1111 1112") == []  # fails the Luhn check
    assert entities("version 300.1.2.999") == []  # not an IPv4 address
    assert entities("the year 2024 had 365 days") == []


def test_redaction_replaces_spans_with_entity_names():
    text = "write to ana@example.org or 415-555-0132"
    assert redact(text, find_pii(text)) == "write to <EMAIL_ADDRESS> or <PHONE_NUMBER>"


def test_verdict_takes_the_most_severe_action():
    body = ChatRequest(messages=[{"role": "user", "content": "my ssn is 536-22-8741"}])
    assert screen(body, 0.1, CONFIG).action == "redact"
    assert screen(body, 0.9, CONFIG).action == "block"
    clean = ChatRequest(messages=[{"role": "user", "content": "hello"}])
    verdict = screen(clean, 0.1, CONFIG)
    assert verdict.action == "allow" and verdict.pii == []


def test_redact_request_changes_only_the_found_spans():
    body = ChatRequest(
        messages=[
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "mail ana@example.org"}]},
            {"role": "user", "content": "ssn 536-22-8741 please"},
        ]
    )
    verdict = screen(body, 0.0, CONFIG)
    out = redact_request(body, verdict.pii)
    assert out.messages[0].content == "be nice"
    assert out.messages[1].content[0]["text"] == "mail <EMAIL_ADDRESS>"
    assert out.messages[2].content == "ssn <US_SSN> please"
