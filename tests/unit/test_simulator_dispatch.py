"""The simulated endpoint over ASGI (no sockets), the streaming client, scraping and dispatch."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.policy import Endpoint, Pool, SelectionConfig
from pipeline.pool.client import PoolHTTPError, _Assembler, stream_chat
from pipeline.pool.dispatcher import Dispatcher
from pipeline.pool.scrape import MetricsScraper, parse_vllm_metrics
from pipeline.pool.selection import RequestShape
from pipeline.pool.simulator import simulator_app

MODEL = "sim-model"
URL = "http://sim-a"
LONG_PROMPT = " ".join(f"word{i}" for i in range(400))


def app(name: str = "sim", max_model_len: int = 4096) -> FastAPI:
    """A simulated A100 serving Llama-3.1-8B timing with no wall-clock latency."""
    return simulator_app("A100", "llama-3.1-8b", [MODEL], max_model_len, math.inf, name=name)


def client_for(apps: dict[str, FastAPI]) -> httpx.AsyncClient:
    """A client routing each base URL to its app in-process."""
    return httpx.AsyncClient(mounts={url: httpx.ASGITransport(app=a) for url, a in apps.items()})


def body(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


async def metrics(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    return parse_vllm_metrics((await client.get(f"{url}/metrics")).text)


async def test_streamed_call_assembles_a_completion_with_usage() -> None:
    async with client_for({URL: app()}) as client:
        reply = await stream_chat(client, URL, body(max_tokens=40), timeout_s=10)
    response = reply.response
    choice = response["choices"][0]
    assert response["object"] == "chat.completion"
    assert len(choice["message"]["content"].split()) == response["usage"]["completion_tokens"]
    assert 1 <= response["usage"]["completion_tokens"] <= 40
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 <= reply.ttft_ms <= reply.latency_ms


async def test_non_streamed_call_answers_in_one_body() -> None:
    async with client_for({URL: app()}) as client:
        reply = await client.post(f"{URL}/v1/chat/completions", json=body(max_tokens=5))
    response = reply.json()
    assert reply.status_code == 200
    assert response["object"] == "chat.completion"
    assert response["usage"]["completion_tokens"] == 5
    assert response["choices"][0]["finish_reason"] == "length"
    assert len(response["choices"][0]["message"]["content"].split()) == 5


async def test_unknown_model_is_a_404_in_openai_error_shape() -> None:
    async with client_for({URL: app()}) as client:
        reply = await client.post(f"{URL}/v1/chat/completions", json={**body(), "model": "nope"})
    assert reply.status_code == 404
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    assert "nope" in reply.json()["error"]["message"]


async def test_prompt_over_max_model_len_is_a_non_retryable_400() -> None:
    async with client_for({URL: app(max_model_len=100)}) as client:
        reply = await client.post(f"{URL}/v1/chat/completions", json=body(LONG_PROMPT))
        with pytest.raises(PoolHTTPError) as raised:
            await stream_chat(client, URL, body(LONG_PROMPT), timeout_s=10)
    assert reply.status_code == 400
    assert "maximum context length" in reply.json()["error"]["message"]
    assert "maximum context length" in str(raised.value)
    assert raised.value.error_type == "pool_rejected" and not raised.value.retryable


async def test_metrics_use_vllm_names_and_count_prefix_hits() -> None:
    async with client_for({URL: app()}) as client:
        before = await metrics(client, URL)
        for _ in range(2):
            await stream_chat(client, URL, body(LONG_PROMPT, max_tokens=4), timeout_s=10)
        text = (await client.get(f"{URL}/metrics")).text
    after = parse_vllm_metrics(text)
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:time_to_first_token_seconds",
    ):
        assert name in text
    assert before["vllm:prefix_cache_hits"] == 0
    assert after["vllm:prefix_cache_hits"] > 0
    assert after["vllm:prefix_cache_queries"] >= after["vllm:prefix_cache_hits"]
    assert after["vllm:request_success"] == 2
    assert after["vllm:num_requests_running"] == after["vllm:num_requests_waiting"] == 0
    assert 0 <= after["vllm:kv_cache_usage_perc"] <= 1


async def test_disaggregated_dispatch_prefills_one_token_then_decodes() -> None:
    prefill_url, decode_url = "http://sim-prefill", "http://sim-decode"
    pool = Pool(
        name="pd",
        endpoints=[
            Endpoint(url=prefill_url, role="prefill"),
            Endpoint(url=decode_url, role="decode"),
        ],
        selection=SelectionConfig(policy="disaggregated"),
    )
    apps = {prefill_url: app("prefill"), decode_url: app("decode")}
    async with client_for(apps) as client:
        dispatcher = Dispatcher(client)
        dispatcher.sync([pool])
        shape = RequestShape("r1", 400, 30)
        call = await dispatcher.call(pool, body(LONG_PROMPT, max_tokens=30), shape, deadline=None)
        prefilled, decoded = await metrics(client, prefill_url), await metrics(client, decode_url)
    assert call.error is None and call.response is not None
    assert call.endpoint == decode_url
    completion = call.response["usage"]["completion_tokens"]
    assert len(call.response["choices"][0]["message"]["content"].split()) == completion
    assert prefilled["vllm:request_success"] == 1 and prefilled["vllm:generation_tokens"] == 1
    assert decoded["vllm:request_success"] == 1
    assert decoded["vllm:generation_tokens"] == completion
    assert call.gpu_cost_usd > 0 and call.energy_j > 0
    assert call.ttft_ms is not None and 0 <= call.ttft_ms <= call.latency_ms
    assert all(book.in_flight == 0 for book in dispatcher.pools["pd"].books.values())


async def test_kv_aware_dispatch_follows_scraped_metrics() -> None:
    cold, warm = "http://sim-cold", "http://sim-warm"
    pool = Pool(
        name="kv",
        endpoints=[Endpoint(url=cold), Endpoint(url=warm)],
        selection=SelectionConfig(policy="kv_aware"),
    )
    async with client_for({cold: app("cold"), warm: app("warm")}) as client:
        dispatcher = Dispatcher(client)
        dispatcher.sync([pool])
        books = dispatcher.pools["kv"].books
        scraper = MetricsScraper(client)
        for book in books.values():
            await scraper.scrape(book)
        for _ in range(2):  # the warm endpoint now shows prefix-cache hits since the last scrape
            await stream_chat(client, warm, body(LONG_PROMPT, max_tokens=2), timeout_s=10)
        for book in books.values():
            await scraper.scrape(book)
        states = {url: book.state() for url, book in books.items()}
        call = await dispatcher.call(pool, body(max_tokens=3), RequestShape("r", 2, 3), None)
    assert all(s.kv_usage is not None and 0 <= s.kv_usage <= 1 for s in states.values())
    assert states[warm].prefix_hit_rate is not None and states[warm].prefix_hit_rate > 0
    assert states[cold].prefix_hit_rate is None
    assert call.endpoint == warm and call.response is not None


def test_assembler_folds_tool_call_deltas_and_logprobs() -> None:
    def chunk(delta: dict[str, Any], **more: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": more.pop("finish", None)}
        if "logprobs" in more:
            choice["logprobs"] = {"content": more.pop("logprobs")}
        return {"id": "c1", "created": 7, "model": "m", "choices": [choice], **more}

    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    token = [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -0.2}]
    assembler = _Assembler()
    produced = [
        assembler.add(chunk({"role": "assistant", "content": ""})),
        assembler.add(chunk(call(0, id="call_0", function={"name": "get_"}), logprobs=token[:1])),
        assembler.add(chunk(call(1, id="call_1", function={"name": "now", "arguments": "{}"}))),
        assembler.add(chunk(call(0, function={"name": "weather", "arguments": '{"city":'}))),
        assembler.add(chunk(call(0, function={"arguments": '"Paris"}'}), logprobs=token[1:])),
        assembler.add(chunk({}, finish="tool_calls", usage={"completion_tokens": 9})),
    ]
    response = assembler.response()
    choice = response["choices"][0]
    assert produced == [False, True, True, True, True, False]
    assert response["id"] == "c1" and response["usage"] == {"completion_tokens": 9}
    assert choice["finish_reason"] == "tool_calls"
    assert choice["logprobs"] == {"content": token}
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}},
    ]
