"""Dead letters: the request address read from broken records, and what a letter keeps."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

from pipeline.bus.dead_letters import dead_letter, readable_request


def test_the_address_is_read_from_schema_invalid_json():
    raw = json.dumps(
        {
            "request": {
                "request_id": "abc",
                "tenant": "acme",
                "session_id": "s-1",
                "reply_to": "wrp.replies.mine",
                "body": {"messages": []},
            }
        }
    ).encode()
    request = readable_request(raw)
    assert request is not None
    assert (request.request_id, request.tenant, request.session_id, request.reply_to) == (
        "abc",
        "acme",
        "s-1",
        "wrp.replies.mine",
    )


def test_the_address_is_read_from_truncated_json():
    whole = json.dumps(
        {
            "request": {
                "request_id": "trunc-1",
                "reply_to": "wrp.responses",
                "body": {"messages": [{"role": "user", "content": "a long question " * 20}]},
            }
        }
    ).encode()
    request = readable_request(whole[: len(whole) // 2])
    assert request is not None and request.request_id == "trunc-1"


def test_invalid_fields_fall_back_to_defaults_and_an_invalid_id_gives_nothing():
    raw = json.dumps(
        {"request": {"request_id": "ok-1", "tenant": "no spaces allowed", "reply_to": 3}}
    ).encode()
    request = readable_request(raw)
    assert request is not None and request.tenant == "default"
    assert request.reply_to == "wrp.responses"
    assert readable_request(json.dumps({"request": {"request_id": "a b"}}).encode()) is None
    assert readable_request(json.dumps({"request": {"request_id": 7}}).encode()) is None
    assert readable_request(b"{not json") is None
    assert readable_request(b"[1, 2]") is None


def test_a_field_named_inside_a_string_is_not_taken_for_the_request_id():
    inner = '{"request": {"body": {"messages": [{"content": "say \\"request_id\\": \\"evil\\""'
    assert readable_request(inner.encode()) is None


def test_a_letter_names_its_record_and_keeps_no_pii():
    raw = b'{"request": {"body": "mail me at jane.roe@example.com", card 4111 1111 1111 1111'
    record = SimpleNamespace(
        topic="wrp.requests", partition=2, offset=7, timestamp=1_700_000_000_123, value=raw
    )
    letter = dead_letter("signals", record, "invalid_json", "bad: jane.roe@example.com", None)
    kept = base64.b64decode(letter.raw)
    assert b"jane.roe@example.com" not in kept and b"4111 1111 1111 1111" not in kept
    assert b"<EMAIL_ADDRESS>" in kept and b"<CREDIT_CARD>" in kept
    assert "jane.roe@example.com" not in letter.error
    assert (letter.topic, letter.partition, letter.offset, letter.record_timestamp) == (
        "wrp.requests",
        2,
        7,
        1_700_000_000_123,
    )


def test_bytes_that_are_not_utf8_are_kept_as_they_are():
    raw = b"\xff\xfe caf\xe9"
    record = SimpleNamespace(topic="t", partition=0, offset=0, timestamp=1, value=raw)
    assert base64.b64decode(dead_letter("s", record, "x", "y", None).raw) == raw


def test_json_nested_past_pythons_recursion_limit_is_just_unreadable():
    assert readable_request(b"[" * 5000 + b"]" * 5000) is None
    nested = b'{"request": {"request_id": "deep-1", "body": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    request = readable_request(nested)  # read from the text, as for truncated JSON
    assert request is not None and request.request_id == "deep-1"
