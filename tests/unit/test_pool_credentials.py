"""Pool credentials: what a policy's ``auth`` may say, how it resolves, what `wrp policy check`
reports, and calls to a simulator with its key check on (in the test's own loop)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.policy import Endpoint, Pool, PoolAuth, load_policy
from pipeline.pool.client import PoolHTTPError, chat
from pipeline.pool.credentials import missing_secrets, resolve_headers
from pipeline.pool.dispatcher import Dispatcher
from pipeline.pool.scrape import MetricsScraper
from pipeline.pool.selection import RequestShape
from pipeline.pool.sim.simulator import simulator_app
from pipeline.preflight import check_policy
from pipeline.settings import DEFAULT_POLICY
from tests.unit.test_policy_check import edited, errors, line_of, warnings, write
from tests.unit.test_simulator_dispatch import MODEL, body, clients, served

SECRET = "sk-test-0123456789"
SHAPE = RequestShape(key="r1", prompt_tokens=3, output_tokens=5, blocks=())


def keyed_app():
    return simulator_app("A100", "llama-3.1-8b", [MODEL], 4096, math.inf, api_key=SECRET)


def test_bearer_key_and_headers_resolve_from_env_and_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text(SECRET + "\n")  # a mounted secret often ends in a newline
    env = {"POOL_KEY": SECRET, "ORG": "acme"}
    by_env = resolve_headers(PoolAuth(api_key_env="POOL_KEY", headers_env={"X-Org": "ORG"}), env)
    by_file = resolve_headers(PoolAuth(api_key_file=str(secret)), env)
    assert by_env.headers == {"Authorization": f"Bearer {SECRET}", "X-Org": "acme"}
    assert by_file.headers == {"Authorization": f"Bearer {SECRET}"}
    assert not by_env.missing and not by_file.missing
    assert SECRET not in repr(by_env) and SECRET not in repr(by_file)
    assert resolve_headers(None, env).headers == {}


def test_missing_secrets_are_named_never_valued(tmp_path: Path) -> None:
    auth = PoolAuth(api_key_file=str(tmp_path / "absent"), headers_env={"X-Org": "ORG"})
    assert resolve_headers(auth, {}).missing == (
        f"secret file {tmp_path / 'absent'} (No such file or directory)",
        "environment variable ORG (empty or unset)",
    )
    broken = resolve_headers(PoolAuth(api_key_env="K"), {"K": "sk-a\nb"})
    assert broken.headers == {} and "line break" in broken.missing[0]
    assert "sk-a" not in broken.missing[0]


def test_an_endpoints_auth_replaces_the_pools() -> None:
    pool = Pool(
        name="p",
        auth=PoolAuth(api_key_env="POOL_KEY"),
        endpoints=[
            Endpoint(url="http://127.0.0.1:1"),
            Endpoint(url="https://api.example.com/v1/", auth=PoolAuth(api_key_env="HOSTED")),
            Endpoint(url="http://127.0.0.1:2", auth=PoolAuth()),
        ],
    )
    first, hosted, open_ = pool.endpoints
    assert pool.endpoint_auth(first) == PoolAuth(api_key_env="POOL_KEY")
    assert pool.endpoint_auth(hosted) == PoolAuth(api_key_env="HOSTED")
    assert resolve_headers(pool.endpoint_auth(open_), {}).headers == {}
    assert hosted.url == "https://api.example.com"  # a hosted API's /v1 base URL is accepted


def test_a_url_with_a_password_in_it_is_refused() -> None:
    with pytest.raises(ValidationError, match="puts a secret in the policy"):
        Endpoint(url="https://user:sk-live@api.example.com/v1")


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        ({"api_key_env": "sk-live-abc"}, "String should match pattern"),
        ({"api_key_env": "A", "api_key_file": "/run/k"}, "not both"),
        ({"api_key_env": "A", "headers_env": {"Authorization": "B"}}, "Authorization"),
        ({"headers_env": {"Host": "B"}}, "set by WRP itself"),
        ({"headers_env": {"X-Org": "acme org"}}, "not an environment variable name"),
        ({"api_key": "sk-live-abc"}, "Extra inputs"),  # the secret itself has no field
    ],
)
def test_auth_that_holds_a_secret_or_clashes_is_refused(auth: dict, says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        PoolAuth.model_validate(auth)
    assert says in str(raised.value)


def test_policy_check_names_a_missing_secret_and_warns_of_clear_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = edited(
        "      - url: http://127.0.0.1:8101\n",
        "      - url: http://gpu-1.internal:8000\n"
        "        auth: {api_key_env: WRP_TEST_POOL_KEY, headers_env: {X-Team: WRP_TEST_TEAM}}\n",
    )
    path = write(tmp_path, text)
    monkeypatch.delenv("WRP_TEST_POOL_KEY", raising=False)
    monkeypatch.setenv("WRP_TEST_TEAM", SECRET)
    findings = check_policy(path)
    (missing,) = errors(findings)
    assert missing.line == line_of(text, "WRP_TEST_POOL_KEY")
    assert "missing secret: environment variable WRP_TEST_POOL_KEY" in missing.message
    (clear,) = warnings(findings)
    assert "plain http" in clear.message and "gpu-1.internal" in clear.message
    monkeypatch.setenv("WRP_TEST_POOL_KEY", SECRET)
    assert not errors(check_policy(path))
    assert all(SECRET not in f.message for f in findings)


async def test_a_keyed_simulator_answers_401_without_the_key_and_serves_with_it() -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with served(keyed_app()) as (url,), clients() as (session, client):
        refused = await client.post(f"{url}/v1/chat/completions", json=body())
        wrong = await client.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"})
        health = await client.get(f"{url}/health")
        with pytest.raises(PoolHTTPError) as raised:
            await chat(session, url, body(), 10, headers={"Authorization": "Bearer sk-wrong"})
        reply = await chat(session, url, body(max_tokens=3), 10, headers=headers)
    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert health.status_code == 200  # readiness probes need no key, as in vLLM
    assert raised.value.error_type == "pool_unauthorized" and not raised.value.retryable
    assert "sk-wrong" not in str(raised.value)
    assert reply.response["usage"]["completion_tokens"] == 3


async def test_dispatch_calls_and_scrapes_with_the_pools_key_and_fails_clearly_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with served(keyed_app()) as (url,), clients() as (session, client):
        pool = Pool(
            name="keyed",
            endpoints=[Endpoint(url=url)],
            auth=PoolAuth(api_key_env="WRP_TEST_POOL_KEY"),
            backoff_ms=0,
        )
        monkeypatch.delenv("WRP_TEST_POOL_KEY", raising=False)
        dispatcher = Dispatcher(session)
        dispatcher.sync([pool])
        unset = await dispatcher.call(pool, body(max_tokens=3), SHAPE, None)
        monkeypatch.setenv("WRP_TEST_POOL_KEY", SECRET)
        dispatcher.sync([pool])  # a policy reload reads the secrets again
        served_call = await dispatcher.call(pool, body(max_tokens=3), SHAPE, None)
        book = dispatcher.pools["keyed"].books[url]
        await MetricsScraper(client).scrape(book)
    assert unset.response is None and unset.error_type == "pool_misconfigured"
    # the client is told the credentials are missing, never which secret (the log says)
    assert "credentials are not configured" in (unset.error or "")
    assert "WRP_TEST_POOL_KEY" not in (unset.error or "")
    assert served_call.error_type is None and served_call.response is not None
    assert SECRET not in repr(served_call) and SECRET not in repr(book)
    assert book.scrape is not None  # /metrics answered the scraper's key


def test_missing_secrets_walks_every_endpoint_once_per_auth() -> None:
    policy = load_policy(DEFAULT_POLICY)
    assert list(missing_secrets(policy, {})) == []
    keyed = policy.pools[0].model_copy(update={"auth": PoolAuth(api_key_env="NOPE")})
    policy = policy.model_copy(update={"pools": [keyed, *policy.pools[1:]]})
    found = list(missing_secrets(policy, {}))
    assert found == [("pools[0].auth", "environment variable NOPE (empty or unset)")]


async def test_a_rotated_secret_file_is_read_again_after_a_401(tmp_path: Path) -> None:
    secret = tmp_path / "vllm-key"
    secret.write_text("sk-old-key")
    async with served(keyed_app()) as (url,), clients() as (session, _):
        pool = Pool(
            name="keyed",
            endpoints=[Endpoint(url=url)],
            auth=PoolAuth(api_key_file=str(secret)),
            retries=0,
        )
        dispatcher = Dispatcher(session)
        dispatcher.sync([pool])
        stale = await dispatcher.call(pool, body(max_tokens=3), SHAPE, None)
        secret.write_text(SECRET)  # the mounted Secret is rotated; the policy is unchanged
        await dispatcher.call(pool, body(max_tokens=3), SHAPE, None)  # still the old key: 401
        rotated = await dispatcher.call(pool, body(max_tokens=3), SHAPE, None)
    assert stale.error_type == "pool_unauthorized" and stale.attempts == 1
    assert "sk-old-key" not in (stale.error or "")
    assert rotated.error_type is None, rotated.error
