import json

import pytest
from pydantic import ValidationError

from pipeline.bus.catalog import load_catalog, payload_schemas
from pipeline.bus.runner import _readable_request, error_reply
from pipeline.envelope import PAYLOADS, ChatRequest, Envelope, RequestSection, Signals
from pipeline.settings import SCHEMAS_DIR


def test_generated_schemas_match_the_committed_files():
    for name, text in payload_schemas().items():
        path = SCHEMAS_DIR / f"{name}.json"
        assert path.exists(), f"{path} missing: run `wrp topics schemas`"
        assert path.read_text() == text, (
            f"{path} drifted from envelope.py: run `wrp topics schemas`"
        )


def test_catalog_names_every_topic_with_a_known_payload_and_compacts_state():
    catalog = load_catalog()
    names = {t.name for t in catalog.topics}
    assert {
        "wrp.requests",
        "wrp.signals",
        "wrp.screened",
        "wrp.routed",
        "wrp.responses",
        "wrp.outcomes",
        "wrp.feedback",
        "wrp.router-state",
        "wrp.pool-state",
        "wrp.dlq",
    } <= names
    assert all(t.payload in PAYLOADS for t in catalog.topics)
    assert catalog.get("wrp.router-state").cleanup_policy == "compact"
    assert catalog.get("wrp.pool-state").cleanup_policy == "compact"
    assert catalog.get("wrp.requests").configs()["cleanup.policy"] == "delete"


def test_envelope_rejects_unknown_fields_and_empty_messages():
    with pytest.raises(ValidationError):
        Envelope.model_validate({"request": {"body": {"messages": []}}})
    with pytest.raises(ValidationError):
        Envelope.model_validate(
            {"request": {"body": {"messages": [{"role": "user"}]}}, "surprise": 1}
        )


def test_partition_key_is_the_session_when_there_is_one():
    body = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    assert RequestSection(body=body, request_id="r1").key == "r1"
    assert RequestSection(body=body, request_id="r1", session_id="s1").key == "s1"


def test_embedding_round_trips_through_float16_base64():
    import numpy as np

    vector = np.linspace(-1, 1, 384).astype(np.float32)
    decoded = Signals.model_construct(embedding=Signals.encode_embedding(vector)).embedding_vector()
    assert np.allclose(decoded, vector, atol=1e-3)


def test_request_id_is_read_from_schema_invalid_bytes_for_the_error_reply():
    raw = json.dumps(
        {"request": {"request_id": "abc", "reply_to": "mine", "body": {"messages": []}}}
    ).encode()
    request = _readable_request(raw)
    assert request is not None and request.request_id == "abc" and request.reply_to == "mine"
    assert _readable_request(b"{not json") is None
    reply = error_reply(Envelope(request=request), "signals", "invalid_schema", "bad")
    assert reply.topic == "mine"
    assert reply.message.result.status == "error"
    assert reply.message.result.error.type == "invalid_schema"


def test_content_parts_must_name_their_type_and_carry_text_as_a_string():
    for part in ({"type": "text", "text": 3}, {"type": ["image_url"]}, {"text": "no type"}):
        with pytest.raises(ValidationError, match="content part 0"):
            ChatRequest(messages=[{"role": "user", "content": [part]}])
