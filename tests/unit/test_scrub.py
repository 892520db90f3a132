"""What rests in ClickHouse, dead letters and logs keeps no raw PII, wherever in a request a
client put it: message text, tool calls, extra fields, and the keys of any object."""

from __future__ import annotations

import json

from pipeline.envelope import ChatRequest, Envelope, RequestSection
from pipeline.safety.scrub import scrub_value, scrubbed_envelope

SSN = "078-05-1120"
EMAIL = "drill.person@example.net"


def test_keys_are_scrubbed_like_values():
    value = {SSN: {"note": f"mail {EMAIL}"}, "list": [{f"to {EMAIL}": 1}], "n": 3}
    assert scrub_value(value) == {
        "<US_SSN>": {"note": "mail <EMAIL_ADDRESS>"},
        "list": [{"to <EMAIL_ADDRESS>": 1}],
        "n": 3,
    }


def test_an_envelope_at_rest_holds_no_raw_value_in_any_field_a_client_may_send():
    body = ChatRequest(
        messages=[
            {"role": "user", "content": f"my SSN is {SSN}"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", SSN: {f"x {EMAIL}": True}}],
                f"extra {EMAIL}": SSN,
            },
        ],
        tools=[{"type": "function", "function": {"name": "f", "description": EMAIL}}],
        **{"metadata": {SSN: EMAIL}},
    )
    stored = json.dumps(scrubbed_envelope(Envelope(request=RequestSection(body=body)), {}))
    assert SSN not in stored and EMAIL not in stored
    assert "<US_SSN>" in stored and "<EMAIL_ADDRESS>" in stored
