"""Tool selection: which tools a request keeps, what it counts, and how the policy sets it."""

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.envelope import ChatRequest, RequestSection
from pipeline.models.encoder import load_encoder
from pipeline.policy import PolicyError, ToolSelectionConfig, load_policy, parse_policy
from pipeline.workload.extractor import SignalExtractor
from pipeline.workload.tool_selection import (
    ToolSelector,
    called_tools,
    forced_tool,
    narrowed_body,
    select,
    tool_text,
    words,
)

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
TOPICS = ["weather", "flights", "hotels", "music", "stocks", "email", "calendar", "maps"]


def tool(name: str, description: str = "", params: tuple[str, ...] = ()) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description or f"Tool about {name}",
            "parameters": {"type": "object", "properties": {p: {"type": "string"} for p in params}},
        },
    }


CATALOGUE = [tool(f"get_{topic}", f"Look up {topic}") for topic in TOPICS]


class TopicEncoder:
    """One dimension per topic word: a text embeds to the topics it mentions (normalised)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        rows = np.zeros((len(texts), len(TOPICS) + 1), dtype=np.float32)
        for i, text in enumerate(texts):
            for j, topic in enumerate(TOPICS):
                rows[i, j] = text.lower().count(topic)
            rows[i, -1] = 0.1  # every text shares a little, so nothing scores exactly 0
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def count_words(text: str) -> int:
    return len(text.split())


def selector(encoder: TopicEncoder | None = None, **config) -> ToolSelector:
    encoder = encoder or TopicEncoder()
    return ToolSelector(ToolSelectionConfig(**config), encoder.encode, count_words)


def body(text: str, tools=CATALOGUE, **extra) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], tools=tools, **extra)


def query(text: str) -> np.ndarray:
    return TopicEncoder().encode([text])[0]


def names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def test_top_k_keeps_the_best_scoring_tools_in_request_order():
    scores = np.array([0.1, 0.9, 0.3, 0.8])
    tools = CATALOGUE[:4]
    kept = select(ToolSelectionConfig(top_k=2, threshold=None), tools, scores, [5] * 4, set())
    assert names(kept.tools) == ["get_flights", "get_music"]
    assert (kept.offered, kept.kept, kept.offered_tokens, kept.saved_tokens) == (4, 2, 20, 10)


def test_threshold_drops_weak_tools_and_can_keep_none():
    scores = np.array([0.1, 0.5, 0.2])
    tools = CATALOGUE[:3]
    some = select(ToolSelectionConfig(top_k=3, threshold=0.3), tools, scores, [1, 2, 3], set())
    none = select(ToolSelectionConfig(top_k=3, threshold=0.6), tools, scores, [1, 2, 3], set())
    assert names(some.tools) == ["get_flights"] and some.kept_tokens == 2
    assert none.tools == [] and none.saved_tokens == 6


def test_a_request_keeps_the_relevant_tools_and_counts_the_tokens_of_the_others():
    s = selector(top_k=2, threshold=0.5, name_weight=0.0)
    request = body("Book me flights to Lisbon and a hotels room near the beach")
    kept = s.select(request, "default", query(request.messages[0].text()))
    assert names(kept.tools) == ["get_flights", "get_hotels"]
    per_tool = [count_words(json.dumps(t)) for t in CATALOGUE]
    assert kept.offered_tokens == sum(per_tool)
    assert kept.kept_tokens == per_tool[1] + per_tool[2]


def test_tools_the_conversation_already_called_are_always_kept():
    s = selector(top_k=1, threshold=0.5)
    request = ChatRequest(
        messages=[
            {"role": "user", "content": "What is on my calendar, and the weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_email", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "3 new emails"},
        ],
        tools=CATALOGUE,
    )
    assert called_tools(request) == {"get_email"}
    kept = s.select(request, "default", query("calendar"))
    assert names(kept.tools) == ["get_email", "get_calendar"]


def test_the_tool_that_tool_choice_names_is_always_kept():
    s = selector(top_k=1, threshold=0.5)
    choice = {"type": "function", "function": {"name": "get_maps"}}
    request = body("what are the stocks doing today", tool_choice=choice)
    assert forced_tool(request) == "get_maps"
    kept = s.select(request, "default", query("stocks"))
    assert names(kept.tools) == ["get_stocks", "get_maps"]


def test_tool_choice_required_keeps_the_best_tool_even_below_the_threshold():
    s = selector(top_k=3, threshold=0.99)
    text = "tell me a joke"
    assert s.select(body(text), "default", query(text)).tools == []
    kept = s.select(body(text, tool_choice="required"), "default", query(text))
    assert kept.kept == 1


def test_min_tools_and_tenant_overrides_decide_which_requests_are_narrowed():
    s = selector(
        enabled=True, min_tools=5, tenants={"acme": {"enabled": False}, "beta": {"top_k": 1}}
    )
    assert s.needs_selection(body("weather"), "default")
    assert not s.needs_selection(body("weather", tools=CATALOGUE[:4]), "default")
    assert not s.needs_selection(body("weather"), "acme")
    assert not selector(enabled=False).needs_selection(body("weather"), "default")
    text = "weather and flights and maps"
    assert s.select(body(text), "beta", query(text)).kept == 1
    assert s.select(body(text), "default", query(text)).kept == 3


def test_the_name_bonus_lifts_a_tool_whose_name_the_request_uses():
    tools = [tool("send_invoice", "Sends a document"), tool("archive_document", "Sends a document")]
    request = body("please send the invoice to Ana", tools=tools)
    s = selector(top_k=1, threshold=None, name_weight=0.2)
    kept = s.select(request, "default", query("nothing topical"))
    assert names(kept.tools) == ["send_invoice"]


def test_tool_embeddings_are_cached_and_only_new_tools_are_embedded_in_one_batch():
    encoder = TopicEncoder()
    s = selector(encoder, cache_size=10)
    s.select(body("weather"), "default", query("weather"))
    assert len(encoder.batches) == 1 and len(encoder.batches[0]) == len(CATALOGUE)
    s.select(body("weather"), "default", query("weather"))
    assert len(encoder.batches) == 1  # resent tools: nothing embedded again
    extra = [tool("get_news", "Latest news"), tool("get_sports", "Scores")]
    s.select(body("news", tools=CATALOGUE + extra), "default", query("news"))
    assert encoder.batches[1] == [tool_text(t) for t in extra]
    s.select(body("x", tools=[tool(f"t{i}") for i in range(12)]), "default", query("x"))
    assert len(s._tools) == 12  # bounded by the cache size, but a request's own tools stay


def test_a_narrowed_body_without_tools_drops_the_fields_that_need_them():
    request = body("hello", tool_choice="auto", parallel_tool_calls=True, temperature=0.2)
    selection = select(ToolSelectionConfig(threshold=0.5), CATALOGUE, np.zeros(8), [1] * 8, set())
    narrowed = narrowed_body(request, selection)
    assert narrowed.tools is None and narrowed.temperature == 0.2
    assert narrowed.model_dump(exclude_none=True).keys() == {
        "model",
        "messages",
        "stream",
        "temperature",
    }
    kept = select(ToolSelectionConfig(top_k=2), CATALOGUE, np.arange(8.0), [1] * 8, set())
    assert names(narrowed_body(request, kept).tools) == ["get_calendar", "get_maps"]
    assert narrowed_body(request, kept).model_extra["tool_choice"] == "auto"


def test_tool_text_reads_the_name_as_words_and_the_parameter_names():
    text = tool_text(tool("ChaDri.change_drink", "Modifies a drink order", ("drink_id", "newSize")))
    assert text == "cha dri change drink. Modifies a drink order. Parameters: drink id new size"
    assert words("getHTTPResponse_v2") == ["get", "http", "response", "v", "2"]


def test_the_policy_section_is_validated_with_the_path(tmp_path):
    import yaml

    data = yaml.safe_load(DEFAULT_POLICY.read_text())
    data["tools"] = {"top_k": 0, "treshold": 0.2}
    with pytest.raises(PolicyError) as err:
        parse_policy(data, tmp_path / "p.yaml")
    found = "\n".join(err.value.problems)
    assert "tools.top_k" in found and "tools.treshold: unknown field" in found
    del data["tools"]
    assert not parse_policy(data, tmp_path / "p.yaml").tools.enabled  # off unless set


def test_the_signals_extractor_narrows_a_request_with_many_tools():
    """The shipped path with the real encoder and the default policy: a weather question with
    20 unrelated tools and a weather tool goes on with the weather tool and few others."""
    policy, encoder = load_policy(DEFAULT_POLICY), load_encoder()
    extractor = SignalExtractor(policy, encoder)
    others = [
        tool(f"tool_{i}", d)
        for i, d in enumerate(
            [
                "Create a calendar event",
                "Send an email message",
                "Translate text",
                "Search flights between airports",
                "Book a hotel room",
                "Play a song",
                "Get a stock quote",
                "Convert currencies",
                "Create a git branch",
                "List files in a directory",
                "Resize an image",
                "Order a pizza",
                "Start a timer",
                "Set an alarm",
                "Look up a word in the dictionary",
                "Compute a route between two places",
                "Post a tweet",
                "Restart a server",
                "Query a SQL database",
                "Summarise a PDF",
            ]
        )
    ]
    weather = tool("get_current_weather", "Current weather for a city", ("location", "unit"))
    catalogue = [*others[:10], weather, *others[10:]]
    plain = RequestSection(body=ChatRequest(messages=[{"role": "user", "content": "Hi there"}]))
    request = RequestSection(
        body=ChatRequest(
            messages=[{"role": "user", "content": "What's the weather like in Berlin right now?"}],
            tools=catalogue,
        )
    )
    (narrowed, untouched), (signals, plain_signals) = extractor.extract_narrowed([request, plain])
    assert untouched is plain and plain_signals.tools_offered == 0
    kept = names(narrowed.body.tools)
    assert "get_current_weather" in kept and len(kept) <= 10
    assert (signals.tools_offered, signals.tools_kept) == (21, len(kept))
    assert 0 < signals.tool_tokens_saved < signals.tool_tokens
    off = SignalExtractor(policy.model_copy(update={"tools": ToolSelectionConfig()}), encoder)
    (same,), (full,) = off.extract_narrowed([request])
    assert same is request and (full.tools_kept, full.tool_tokens_saved) == (21, 0)
    assert signals.prompt_tokens < full.prompt_tokens  # counted on what the model will see
