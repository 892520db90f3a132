"""Routing through the real broker: feedback moves the router's choice, a changed policy file
takes effect without a restart while a broken one is refused, and the semantic cache answers
repeated questions without dispatch."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from pipeline.analytics.access import query_analytics
from pipeline.bus.catalog import ROUTER_STATE
from pipeline.bus.codec import decode
from pipeline.cli import main
from pipeline.client import replay, send_feedback, start_producer
from pipeline.envelope import Envelope, Feedback, RouterState
from pipeline.learn.evidence import length_sampled
from pipeline.models.encoder import load_encoder
from pipeline.policy.reload import policy_version
from pipeline.router.predictor import features, load_predictor
from tests.integration.conftest import run
from tests.integration.helpers import eventually, read_topic, request

pytestmark = pytest.mark.integration

TENANT = "learning-test"
GOOD, BAD = "wrp-small-8b", "wrp-large-70b"
ROUNDS, PER_ROUND = 8, 10
CACHE_TENANT = "cache-test"


def cached_decision() -> dict:
    return {
        "name": "cached_test",
        "priority": 1001,
        "when": {"all": [{"signal": "tenant", "equals": CACHE_TENANT}]},
        "models": [GOOD],
        "cache": {"enabled": True, "similarity": 0.9, "ttl_s": 600},
    }


def learning_decision() -> dict:
    """Thompson between two models for one tenant, free to explore; the card priors favour
    BAD (0.8 vs 0.6), so following GOOD's feedback goes against the prior."""
    return {
        "name": "learn_test",
        "priority": 1000,
        "when": {"all": [{"signal": "tenant", "equals": TENANT}]},
        "models": [BAD, GOOD],
        "strategy": "thompson",
        "exploration": {"floor": 0.0, "ceiling": 1.0},
    }


@contextlib.contextmanager
def policy_edit(path: Path) -> Iterator[dict]:
    """Yield the policy as data; write it back; restore the original file afterwards."""
    original = path.read_text()
    data = yaml.safe_load(original)
    try:
        yield data
    finally:
        path.write_text(original)


def ask(stack, texts: list[str], tenant: str = TENANT) -> dict[str, Envelope]:
    requests = [request(text, tenant=tenant) for text in texts]
    return run(replay(stack.settings.broker, requests, rate=0, timeout_s=90))


def policy_status(stack) -> dict:
    url = f"http://127.0.0.1:{stack.settings.stage_port('router')}/policy"
    return httpx.get(url, timeout=5).json()


def reloaded(stack, path: Path) -> str:
    """Wait until the router runs exactly the file now at ``path`` (not an earlier reload that
    was still pending when the file changed) and return its version."""
    version = policy_version(path)
    eventually(lambda: policy_status(stack)["version"] == version, what="reload")
    return version


def test_policy_reload_applies_a_valid_file_and_keeps_the_old_one_on_errors(stack):
    path = stack.settings.policy
    before = policy_version(path)  # the file in force once any pending reload lands
    with policy_edit(path) as data:
        data["router"]["decisions"].append(learning_decision())
        path.write_text(yaml.safe_dump(data))
        version = reloaded(stack, path)
        env = next(iter(ask(stack, ["which reload is this?"]).values()))
        assert env.decision.decision == "learn_test"
        assert env.decision.policy_version == version
        path.write_text(path.read_text().replace("strategy: thompson", "strategy: telepathy"))
        error = eventually(lambda: policy_status(stack)["error"], what="reload error")
        assert "router.default.strategy: Input should be" in error
        env = next(iter(ask(stack, ["still the old policy?"]).values()))
        assert env.decision.decision == "learn_test"
        assert env.decision.policy_version == version
    eventually(lambda: policy_status(stack)["version"] == before, what="restore")


def test_feedback_moves_the_choice_toward_the_model_users_like(stack):
    async def arm_observations() -> int:
        """Feedback folded into the test's arms (answer lengths fold in as no evidence)."""
        records = await read_topic(stack.settings.broker, ROUTER_STATE)
        states = [decode(r.value, RouterState) for r in records]
        latest = {s.key: s for s in states if s.decision == "learn_test"}
        return sum(s.observations for s in latest.values())

    async def feedback(answers: dict[str, Envelope]) -> None:
        producer = await start_producer(stack.settings.broker)
        try:
            for rid, env in answers.items():
                score = 1.0 if env.decision.model == GOOD else 0.0
                await send_feedback(producer, Feedback(request_id=rid, score=score))
        finally:
            await producer.stop()

    path = stack.settings.policy
    with policy_edit(path) as data:
        data["router"]["decisions"].append(learning_decision())
        path.write_text(yaml.safe_dump(data))
        reloaded(stack, path)
        base = run(arm_observations())
        shares = []
        for round_ in range(ROUNDS):
            texts = [f"round {round_} question {i}: name a prime number" for i in range(PER_ROUND)]
            answers = ask(stack, texts)
            assert {env.decision.decision for env in answers.values()} == {"learn_test"}
            shares.append(sum(e.decision.model == GOOD for e in answers.values()) / PER_ROUND)
            if shares[-1] >= 0.9:
                break
            run(feedback(answers))
            sent = (round_ + 1) * PER_ROUND
            eventually(lambda sent=sent: run(arm_observations()) - base >= sent, what="learner")
    assert shares[-1] >= 0.9, f"share of {GOOD} per round: {shares}"


def test_the_semantic_cache_answers_repeats_without_dispatch(stack):
    path = stack.settings.policy
    question = "What is the boiling point of water at sea level in Celsius?"
    with policy_edit(path) as data:
        data["router"]["decisions"].append(cached_decision())
        path.write_text(yaml.safe_dump(data))
        reloaded(stack, path)
        (first,) = ask(stack, [question], CACHE_TENANT).values()
        assert first.decision.decision == "cached_test" and not first.decision.cache_hit
        assert first.trail[-1].stage == "dispatch"

        dispatched = [first.result.response]  # asked again before the entry reached the router

        def cached(text: str, tenant: str = CACHE_TENANT) -> Envelope | None:
            (env,) = ask(stack, [text], tenant).values()
            if not env.decision.cache_hit:
                dispatched.append(env.result.response)
                return None
            return env

        exact = eventually(lambda: cached(question), what="exact cache hit")
        assert exact.result.response in dispatched  # an answer a pool gave, stored and reused
        assert exact.outcome.cost_usd == 0 and exact.outcome.endpoint == "cache"
        assert [s.stage for s in exact.trail] == ["signals", "safety", "router"]
        similar = cached("what is the boiling point of water at sea level, in celsius")
        assert similar is not None and similar.result.response == exact.result.response
        assert cached("How far away is the Moon from the Earth?") is None
        (other_tenant,) = ask(stack, [question], "someone-else").values()
        assert not other_tenant.decision.cache_hit


PREDICTOR_TENANT = "predictor-test"


def test_a_predictor_trained_from_analytics_learns_what_users_liked(stack, tmp_path, monkeypatch):
    """Feedback stored in ClickHouse becomes the labels of `wrp router train --from-analytics`:
    users liked the answers about primes and disliked the poems, and the predictor says so for
    prompts it has not seen. The learner also folded a served answer's length into the arm."""

    primes = [f"which prime number follows {n}? explain the divisibility check" for n in range(20)]
    poems = [f"write a short poem about the colour number {n} and the sea" for n in range(20)]
    # one model serves them all (pinned), so the labels differ by request only
    requests = [request(t, tenant=PREDICTOR_TENANT, model=GOOD) for t in primes + poems]
    # one of them is among the answers whose length the learner folds in
    requests[0].request_id = next(
        rid for i in range(1000) if length_sampled(rid := f"{PREDICTOR_TENANT}-length-{i}")
    )
    answers = run(replay(stack.settings.broker, requests, rate=0, timeout_s=90))

    async def feedback() -> None:
        producer = await start_producer(stack.settings.broker)
        try:
            for rid, env in answers.items():
                prime = "prime" in env.request.body.messages[-1].text()
                await send_feedback(producer, Feedback(request_id=rid, score=float(prime)))
        finally:
            await producer.stop()

    run(feedback())
    params = {"since": "1h", "tenant": PREDICTOR_TENANT}
    eventually(
        lambda: len(query_analytics(stack.settings, "labelled", params)["rows"]) == len(answers),
        what="feedback in analytics",
    )
    out = tmp_path / "predictor.npz"
    monkeypatch.setenv("WRP_METRICS_PORT_BASE", str(stack.settings.metrics_port_base))
    monkeypatch.setenv("WRP_STATE_DIR", str(stack.settings.state_dir))
    argv = ["router", "train", "--from-analytics", "--since", "1h", "--tenant", PREDICTOR_TENANT]
    assert main([*argv, "--out", str(out)]) == 0
    predictor = load_predictor(out)
    encoder = load_encoder()
    texts = ["is 97 a prime number? show the check", "a poem about the sea in the evening"]
    x = features(encoder.encode(texts), ["math", "other"], ["easy", "easy"])
    assert predictor.models == (GOOD,)
    prime, poem = predictor.probabilities(x)[:, 0]
    assert prime > poem + 0.2

    async def lengths() -> list[RouterState]:
        records = await read_topic(stack.settings.broker, ROUTER_STATE)
        return [decode(r.value, RouterState) for r in records]

    def learnt() -> RouterState | None:
        arms = [s for s in run(lengths()) if (s.decision, s.model) == ("explicit", GOOD)]
        latest = max(arms, key=lambda s: s.version) if arms else None
        return latest if latest and latest.completions >= 1 else None

    assert eventually(learnt, what="a learnt answer length").answer_tokens() > 0
