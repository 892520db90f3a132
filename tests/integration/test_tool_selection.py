"""Tool selection through the real pipeline: a request offering many tools reaches its pool with
only the relevant ones, and the tools and tokens saved land in ClickHouse."""

from __future__ import annotations

import pytest

from pipeline.analytics.access import query_analytics
from pipeline.client import replay
from pipeline.envelope import ChatRequest, RequestSection
from tests.integration.conftest import run
from tests.integration.helpers import analytics_row, eventually

pytestmark = pytest.mark.integration

TENANT = "tools-test"
DUTIES = [
    "Create a calendar event",
    "Send an email message",
    "Translate text between languages",
    "Search flights between two airports",
    "Book a hotel room",
    "Play a song on the speaker",
    "Get a stock quote",
    "Convert an amount between currencies",
    "Create a git branch",
    "List the files in a directory",
    "Resize an image",
    "Order a pizza",
    "Start a countdown timer",
    "Set an alarm",
    "Look up a word in the dictionary",
    "Compute a driving route between two places",
    "Post a message on social media",
    "Restart a server",
    "Query a SQL database",
    "Summarise a PDF document",
    "Create a support ticket",
    "Scan a QR code",
    "Read the battery level",
    "Lock the front door",
]


def tool(name: str, description: str, params: tuple[str, ...] = ()) -> dict:
    properties = {p: {"type": "string", "description": p} for p in params}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties},
        },
    }


def test_a_request_with_many_tools_reaches_the_pool_with_the_relevant_ones(stack):
    weather = tool("get_current_weather", "Current weather for a city", ("location", "unit"))
    catalogue = [tool(f"tool_{i}", duty) for i, duty in enumerate(DUTIES)]
    catalogue.insert(7, weather)
    called = catalogue[20]["function"]["name"]
    conversation = [
        {"role": "user", "content": "Is it raining in Lisbon right now? Then open a ticket."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": called, "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ticket 42 opened"},
    ]
    agent = RequestSection(tenant=TENANT, body=ChatRequest(messages=conversation, tools=catalogue))
    few = RequestSection(  # below min_tools: left alone
        tenant=TENANT,
        body=ChatRequest(
            messages=[{"role": "user", "content": "Is it raining in Lisbon?"}],
            tools=catalogue[:5],
        ),
    )
    answers = run(replay(stack.settings.broker, [agent, few], rate=0, timeout_s=120))

    served = answers[agent.request_id]
    assert served.result.status == "ok"
    kept = [t["function"]["name"] for t in served.request.body.tools]  # what dispatch sent
    assert "get_current_weather" in kept and called in kept  # relevant, and already called
    assert len(kept) <= 11 and served.signals.tools_offered == len(catalogue)
    assert served.signals.tools_kept == len(kept)
    assert 0 < served.signals.tool_tokens_saved < served.signals.tool_tokens
    untouched = answers[few.request_id]
    assert len(untouched.request.body.tools) == 5 and untouched.signals.tools_kept == 5

    row = eventually(lambda: analytics_row(stack, agent.request_id), what="the agent's row")
    assert row["status"] == "ok"

    def savings() -> list[dict] | None:
        result = query_analytics(stack.settings, "tool_savings", {"tenant": TENANT, "since": "1h"})
        rows = [dict(zip(result["columns"], r, strict=True)) for r in result["rows"]]
        return rows if rows and rows[0]["requests_with_tools"] == 2 else None

    (day,) = eventually(savings, what="tool savings in ClickHouse")
    assert day["tenant"] == TENANT and day["narrowed"] == 1
    assert day["tools_offered"] == len(catalogue) + 5
    assert day["tools_kept"] == len(kept) + 5
    assert day["tool_tokens_saved"] == served.signals.tool_tokens_saved
