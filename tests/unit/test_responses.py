"""The Responses API subset asked as a chat completion: what is converted, what is refused."""

import pytest

from pipeline.gateway.responses import ResponsesRequest, Unsupported, chat_body

TOOL = {"type": "function", "name": "weather", "parameters": {"type": "object"}}


def test_a_function_named_in_tool_choice_becomes_the_chat_form():
    request = ResponsesRequest(
        model="auto",
        input="Weather in Oslo?",
        tools=[TOOL],
        tool_choice={"type": "function", "name": "weather"},
    )
    body = chat_body(request)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}


def test_structured_output_and_unknown_tool_choices_are_refused_by_name():
    structured = ResponsesRequest.model_validate(
        {"model": "auto", "input": "hi", "text": {"format": {"type": "json_object"}}}
    )
    with pytest.raises(Unsupported) as refused:
        chat_body(structured)
    assert refused.value.param == "text.format"
    builtin = ResponsesRequest(model="auto", input="hi", tool_choice={"type": "web_search"})
    with pytest.raises(Unsupported) as refused:
        chat_body(builtin)
    assert refused.value.param == "tool_choice"
    plain = ResponsesRequest.model_validate(
        {"model": "auto", "input": "hi", "text": {"format": {"type": "text"}}}
    )
    assert chat_body(plain)["messages"] == [{"role": "user", "content": "hi"}]
