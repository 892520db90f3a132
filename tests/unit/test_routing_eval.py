"""`wrp eval routing` on small synthetic benches (no shared data needed)."""

import numpy as np
import pytest

from pipeline.envelope import ChatRequest, RequestSection, Signals
from pipeline.evaluation import routing_online, routing_replay, routing_strong_weak
from pipeline.policy import SignalsConfig
from tests.unit.factories import make_signals

SIGNALS = SignalsConfig(context_classes=[{"name": "any", "max_tokens": 10**6}])


def signals(vector: np.ndarray, domain: str = "other") -> Signals:
    return make_signals(
        prompt_tokens=100,
        context_class="any",
        language_score=1.0,
        expected_output_tokens=10,
        domain=domain,
        complexity_score=0.9,
        embedding=Signals.encode_embedding(vector),
    )


def bench(correct: np.ndarray, vectors: np.ndarray, train: np.ndarray) -> routing_replay.Bench:
    """A two-model bench: 'weak' ($0.1 per 1M tokens) and 'strong' ($10)."""
    prices = [(0.1, 0.1), (10.0, 10.0)]
    rows = len(correct)
    return routing_replay.Bench(
        name="synthetic",
        models=["weak", "strong"],
        prices=prices,
        requests=[
            RequestSection(
                request_id=f"r{i}",
                body=ChatRequest(messages=[{"role": "user", "content": f"question {i}"}]),
            )
            for i in range(rows)
        ],
        signals=[signals(v) for v in vectors],
        vectors=vectors,
        correct=correct,
        cost=routing_replay.usd_per_1k(np.full(rows, 100.0), np.full((rows, 2), 10.0), prices),
        train=train,
    )


def test_first_crossing_interpolates_on_the_frontier():
    shares, accuracy = [0.0, 0.5, 1.0], [0.6, 0.7, 0.8]
    assert routing_replay.first_crossing(shares, accuracy, 0.75) == pytest.approx(0.75)
    assert routing_replay.first_crossing(shares, accuracy, 0.5) == 0.0
    assert routing_replay.first_crossing(shares, accuracy, 0.81) is None
    # (0.5, 0.70) is beaten by the cheaper (0.3, 0.72): the curve goes (0, .6) -> (.3, .72)
    shares, accuracy = [0.0, 0.3, 0.5, 1.0], [0.6, 0.72, 0.70, 0.8]
    assert routing_replay.first_crossing(shares, accuracy, 0.71) == pytest.approx(0.3 * 0.11 / 0.12)


def test_random_share_and_value_at():
    assert routing_replay.random_share(strong=0.8, weak=0.6, target=0.76) == pytest.approx(0.8)
    assert routing_replay.random_share(strong=0.8, weak=0.6, target=0.5) == 0.0
    assert routing_replay.value_at([1.0, 2.0, 4.0], [0.5, 0.6, 0.7], 3.0) == pytest.approx(0.65)
    assert routing_replay.value_at([1.0, 2.0], [0.5, 0.6], 9.0) == pytest.approx(0.6)
    assert routing_replay.value_at([1.0, 2.0], [0.5, 0.6], 0.5) is None


def test_oracle_takes_the_best_score_then_the_cheapest():
    correct = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=float)
    cost = np.array([[3.0, 1.0, 2.0], [1.0, 5.0, 4.0], [2.0, 1.0, 3.0]])
    hit, spent = routing_replay.oracle(correct, cost)
    assert hit.tolist() == [1.0, 1.0, 0.0]
    assert spent.tolist() == [1.0, 4.0, 1.0]
    # graded scores: the best score wins even when a cheaper model scores above 0; an unknown
    # score never wins
    graded = np.array([[0.3, 0.9, 0.9], [np.nan, 0.2, 0.1]])
    hit, spent = routing_replay.oracle(graded, np.array([[1.0, 5.0, 4.0], [0.1, 2.0, 1.0]]))
    assert hit.tolist() == [0.9, 0.2]
    assert spent.tolist() == [4.0, 2.0]


def test_sweep_bisects_where_points_are_far_apart():
    seen: list[float] = []

    def run(lam: float) -> dict:
        seen.append(lam)
        return {"share": 1.0 if lam < 0.05 else 0.0}

    lambdas = (-1.0, 0.0, 1e-3, 1e-2, 0.1, 1.0)
    points = routing_replay.sweep(run, "share", 0.5, lambdas)
    assert len(points) == routing_replay.SWEEP_POINTS
    assert seen[: len(lambdas)] == list(lambdas)
    assert all(0.01 <= lam <= 0.1 for lam in seen[len(lambdas) :])


def test_sweep_weights_span_both_signs_in_units_of_the_cost_spread():
    weights = routing_replay.cost_weights(np.array([[1.0, 3.0], [1.0, 5.0]]))  # spread of means: 3
    assert min(weights) < 0 < max(weights) and 0.0 in weights
    assert max(weights) == pytest.approx(max(routing_replay.SCALES) / 3)
    assert routing_replay.cost_weights(np.ones((2, 2))) == (0.0,)


def test_trailing_accuracy_and_requests_to_reach():
    rewards = np.array([0, 0, 1, 1, 1, 1], dtype=float)
    assert np.isnan(routing_online.trailing(rewards, 3)[:2]).all()
    assert routing_online.trailing(rewards, 3)[2:].tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1])
    assert routing_online.requests_to_reach(rewards, 0.6, 3) == 4
    assert routing_online.requests_to_reach(rewards, 1.1, 3) is None


def test_knn_routes_strong_only_where_neighbours_need_it(tmp_path):
    """Two clusters: the weak model answers one, only the strong model the other."""
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:2]
    cluster = np.arange(400) % 2
    vectors = centres[cluster] + 0.05 * rng.standard_normal((400, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    correct = np.stack([cluster == 0, np.ones(400, bool)], axis=1).astype(float)
    section = routing_strong_weak.strong_weak(
        bench(correct, vectors, np.arange(400) < 300), SIGNALS, tmp_path
    )
    curve = section["curves"]["knn"]
    assert section["strong_accuracy"] == 1.0
    # routing reaches 95% of the strong model's accuracy with about half the strong calls
    assert curve["strong_share_needed"] == pytest.approx(0.45, abs=0.06)
    assert section["random"]["strong_share_needed"] == pytest.approx(0.9, abs=0.02)


def test_thompson_learns_the_better_model_from_feedback():
    rng = np.random.default_rng(1)
    rows = 300
    vectors = np.tile(np.eye(8, dtype=np.float32)[0], (rows, 1))
    correct = np.stack([rng.random(rows) < 0.2, rng.random(rows) < 0.9], axis=1).astype(float)
    synthetic = bench(correct, vectors, np.zeros(rows, bool))
    policy = routing_replay.build_policy(SIGNALS, synthetic.cards(), "thompson")
    rewards, explored = routing_online.learn(synthetic, np.arange(rows), policy)
    assert rewards[-100:].mean() > 0.75
    assert rewards[-100:].mean() > rewards[:20].mean()
    assert explored <= 0.3
