import pytest
from pydantic import ValidationError

from pipeline.bus.catalog import load_catalog, payload_schemas
from pipeline.bus.stage import error_reply
from pipeline.envelope import PAYLOADS, ChatRequest, Envelope, RequestSection, Signals
from pipeline.settings import SCHEMAS_DIR
from tests.unit.factories import make_signals


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


def test_an_error_reply_goes_to_reply_to_unless_told_otherwise():
    request = RequestSection(request_id="abc", reply_to="wrp.replies.mine")
    reply = error_reply(Envelope(request=request), "signals", "invalid_schema", "bad")
    assert reply.topic == "wrp.replies.mine"
    assert reply.message.result.status == "error"
    assert reply.message.result.error.type == "invalid_schema"
    assert error_reply(Envelope(request=request), "s", "t", "m", "wrp.responses").topic == (
        "wrp.responses"
    )


def test_client_chosen_names_are_constrained():
    for field, value in (
        ("tenant", "acme corp"),
        ("tenant", ""),
        ("tenant", "x" * 65),
        ("request_id", "has space"),
        ("request_id", "é"),
        ("session_id", "x" * 129),
        ("reply_to", "bad/topic"),
    ):
        with pytest.raises(ValidationError):
            RequestSection(**{field: value})
    assert RequestSection(tenant="acme-eu.1", request_id="req:42").hops == 0


def test_advancing_an_envelope_counts_a_hop():
    env = Envelope(request=RequestSection(request_id="r"))
    once = env.advance("signals", 0.0)
    assert (once.request.hops, len(once.trail)) == (1, 1)
    assert once.advance("safety", 0.0).request.hops == 2


def test_content_parts_must_name_their_type_and_carry_text_as_a_string():
    for part in ({"type": "text", "text": 3}, {"type": ["image_url"]}, {"text": "no type"}):
        with pytest.raises(ValidationError, match="content part 0"):
            ChatRequest(messages=[{"role": "user", "content": [part]}])


def test_signals_sent_with_the_dropped_prefix_hashes_still_read():
    signals = make_signals().model_dump(mode="json")
    old = Envelope(
        request=RequestSection(body=ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    )
    data = old.model_dump(mode="json") | {"signals": signals | {"prefix_hashes": ["ab12"]}}
    assert Envelope.model_validate(data).signals == make_signals()
    with pytest.raises(ValidationError):
        Signals.model_validate(signals | {"prefix_hash": ["ab12"]})  # other unknown fields fail
