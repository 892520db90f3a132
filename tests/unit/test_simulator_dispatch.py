"""The simulated endpoint served on loopback in the test's own loop, the pool client (plain and
streamed calls), scraping and dispatch."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from pipeline.http_server import serve_http
from pipeline.policy import Endpoint, Pool, SelectionConfig
from pipeline.pool.client import PoolHTTPError, _Assembler, chat
from pipeline.pool.dispatcher import Dispatcher
from pipeline.pool.scrape import MetricsScraper, parse_vllm_metrics
from pipeline.pool.selection import RequestShape
from pipeline.pool.sim.simulator import simulator_app

MODEL = "sim-model"
LONG_PROMPT = " ".join(f"word{i}" for i in range(400))


def app(name: str = "sim", max_model_len: int = 4096) -> FastAPI:
    """A simulated A100 serving Llama-3.1-8B timing with no wall-clock latency."""
    return simulator_app("A100", "llama-3.1-8b", [MODEL], max_model_len, math.inf, name=name)


@contextlib.asynccontextmanager
async def served(*apps: FastAPI) -> AsyncIterator[list[str]]:
    """Each app on a free loopback port for the duration; their base URLs."""
    servers = [await serve_http(a, 0) for a in apps]
    try:
        yield [
            f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            for _, server in servers
        ]
    finally:
        for task, server in servers:
            server.should_exit = True
            await task


@contextlib.asynccontextmanager
async def clients() -> AsyncIterator[tuple[aiohttp.ClientSession, httpx.AsyncClient]]:
    async with aiohttp.ClientSession() as session, httpx.AsyncClient() as client:
        yield session, client


def body(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


async def ignore(chunks: list[dict[str, Any]]) -> None:
    """A relay that drops what it is given (to make a call stream)."""


async def metrics(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    return parse_vllm_metrics((await client.get(f"{url}/metrics")).text)


async def test_streamed_call_relays_chunks_and_assembles_a_completion_with_usage() -> None:
    relayed: list[dict[str, Any]] = []

    async def relay(chunks: list[dict[str, Any]]) -> None:
        relayed.extend(chunks)

    async with served(app()) as (url,), clients() as (session, _):
        reply = await chat(session, url, body(max_tokens=40), timeout_s=10, relay=relay)
    response = reply.response
    streamed = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in relayed if c["choices"]
    )
    assert relayed and streamed == response["choices"][0]["message"]["content"]
    choice = response["choices"][0]
    assert response["object"] == "chat.completion"
    assert len(choice["message"]["content"].split()) == response["usage"]["completion_tokens"]
    assert 1 <= response["usage"]["completion_tokens"] <= 40
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 <= reply.ttft_ms <= reply.latency_ms


async def test_plain_call_answers_in_one_body_without_a_first_token_time() -> None:
    async with served(app()) as (url,), clients() as (session, _):
        reply = await chat(session, url, body(max_tokens=5), timeout_s=10)
    response = reply.response
    assert reply.ttft_ms is None
    assert response["object"] == "chat.completion"
    assert response["usage"]["completion_tokens"] == 5
    assert response["choices"][0]["finish_reason"] == "length"
    assert len(response["choices"][0]["message"]["content"].split()) == 5


def odd_pool() -> FastAPI:
    """An endpoint whose answers are all of an odd shape, by the model asked for."""
    odd = FastAPI()
    answers = {
        "number-message": (500, b'{"error": {"message": 123}}', "application/json"),
        "list": (200, b"[1, 2]", "application/json"),
        "not-utf8": (200, b"\xff\xfe{", "application/json"),
        "choices-of-numbers": (200, b'{"choices": [1]}', "application/json"),
        "stream-of-lists": (200, b"data: [1]\n\n", "text/event-stream"),
        "stream-of-odd-choices": (200, b'data: {"choices": [7]}\n\n', "text/event-stream"),
    }

    @odd.post("/v1/chat/completions")
    async def answer(payload: dict[str, Any]) -> Response:
        status, content, kind = answers[payload["model"]]
        return Response(content, status, media_type=kind)

    return odd


@pytest.mark.parametrize(
    ("model", "stream", "kind"),
    [
        ("number-message", False, "pool_error"),
        ("list", False, "pool_bad_response"),
        ("not-utf8", False, "pool_bad_response"),
        ("choices-of-numbers", False, "pool_bad_response"),
        ("stream-of-lists", True, "pool_bad_response"),
        ("stream-of-odd-choices", True, "pool_bad_response"),
    ],
)
async def test_an_answer_of_odd_shape_is_a_retryable_pool_error(
    model: str, stream: bool, kind: str
) -> None:
    async with served(odd_pool()) as (url,), clients() as (session, _):
        with pytest.raises(PoolHTTPError) as raised:
            await chat(session, url, {**body(), "model": model}, 10, ignore if stream else None)
    assert raised.value.error_type == kind and raised.value.retryable


async def test_unknown_model_is_a_404_in_openai_error_shape() -> None:
    async with served(app()) as (url,), clients() as (_, client):
        reply = await client.post(f"{url}/v1/chat/completions", json={**body(), "model": "nope"})
    assert reply.status_code == 404
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    assert "nope" in reply.json()["error"]["message"]


async def test_prompt_over_max_model_len_is_a_non_retryable_400() -> None:
    async with served(app(max_model_len=100)) as (url,), clients() as (session, client):
        reply = await client.post(f"{url}/v1/chat/completions", json=body(LONG_PROMPT))
        with pytest.raises(PoolHTTPError) as raised:
            await chat(session, url, body(LONG_PROMPT), timeout_s=10)
    assert reply.status_code == 400
    assert "maximum context length" in reply.json()["error"]["message"]
    assert "maximum context length" in str(raised.value)
    assert raised.value.error_type == "pool_rejected" and not raised.value.retryable


async def test_metrics_use_vllm_names_and_count_prefix_hits() -> None:
    async with served(app()) as (url,), clients() as (session, client):
        before = await metrics(client, url)
        for _ in range(2):
            await chat(session, url, body(LONG_PROMPT, max_tokens=4), timeout_s=10)
        text = (await client.get(f"{url}/metrics")).text
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
    async with (
        served(app("prefill"), app("decode")) as (prefill_url, decode_url),
        clients() as (session, client),
    ):
        pool = Pool(
            name="pd",
            endpoints=[
                Endpoint(url=prefill_url, role="prefill"),
                Endpoint(url=decode_url, role="decode"),
            ],
            selection=SelectionConfig(policy="disaggregated"),
        )
        dispatcher = Dispatcher(session)
        dispatcher.sync([pool])
        shape = RequestShape("r1", 400, 30)
        call = await dispatcher.call(
            pool, body(LONG_PROMPT, max_tokens=30), shape, deadline=None, relay=ignore
        )
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
    async with (
        served(app("cold"), app("warm")) as (cold, warm),
        clients() as (session, client),
    ):
        pool = Pool(
            name="kv",
            endpoints=[Endpoint(url=cold), Endpoint(url=warm)],
            selection=SelectionConfig(policy="kv_aware"),
        )
        dispatcher = Dispatcher(session)
        dispatcher.sync([pool])
        books = dispatcher.pools["kv"].books
        scraper = MetricsScraper(client)
        for book in books.values():
            await scraper.scrape(book)
        for _ in range(2):  # the warm endpoint now shows prefix-cache hits since the last scrape
            await chat(session, warm, body(LONG_PROMPT, max_tokens=2), timeout_s=10)
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
