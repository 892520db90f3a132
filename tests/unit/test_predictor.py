"""The success predictor: training variants with bracketed grids, calibration, the held-out guard
against always-one-model, the ``predicted`` strategy through route(), and labelled files."""

import json

import numpy as np
import pytest

from pipeline.evaluation import predictor_training as training
from pipeline.evaluation import routing_replay, routing_strong_weak
from pipeline.router.labelled import LabelsError, read_labelled
from pipeline.router.neighbours import KnnIndex
from pipeline.router.predictor import VARIANTS, features, load_predictor
from tests.unit.test_routing_eval import SIGNALS, bench

DIMS = 8


def clustered(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around two centres, and each row's cluster."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(rows) % 2
    vectors = np.eye(DIMS, dtype=np.float32)[cluster] + 0.3 * rng.standard_normal(
        (rows, DIMS)
    ).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), cluster


def training_set(vectors: np.ndarray, y: np.ndarray, cost: np.ndarray | None = None):
    x = features(vectors, ["other"] * len(vectors), ["easy"] * len(vectors))
    folds = np.arange(len(vectors)) % 5
    return training.TrainingSet(x, y, ["weak", "strong"], folds, DIMS, cost)


def test_bracketed_widens_the_grid_until_the_best_value_is_inside():
    tried = []

    def evaluate(value: float) -> float:
        tried.append(value)
        return (np.log10(value) - 3.2) ** 2  # best near 10^3.2, outside the first grid

    best, results = training.bracketed(evaluate, [0.1, 1.0, 10.0], lambda v, d: v * 10.0**d)
    assert best == pytest.approx(1000.0)
    assert min(results) < best < max(results)  # a tried value on each side
    # a plateau stops the widening instead of running to the limit
    best, results = training.bracketed(lambda v: 1.0, [1.0, 2.0], lambda v, d: v * 2.0**d)
    assert len(results) == 3


def test_the_predictor_learns_which_model_each_kind_of_request_needs(tmp_path):
    vectors, cluster = clustered(400)
    rng = np.random.default_rng(1)
    # the weak model is best on cluster 0 only; the strong one fair on both; graded scores
    weak = np.where(cluster == 0, 0.95, 0.1) + 0.03 * rng.standard_normal(400)
    y = np.clip(np.stack([weak, np.full(400, 0.7)], axis=1), 0, 1)
    predictor, report = training.train_predictor(training_set(vectors, y), lambda _: None)
    assert report["variant"] in VARIANTS
    assert set(report["cv_brier"]) == {"linear", "pairwise", "knn"}  # low_rank needs 3 models
    assert report["brier"] < report["brier_of_base_rates"]
    path = tmp_path / "predictor.npz"
    predictor.save(path)
    loaded = load_predictor(path)
    test, test_cluster = clustered(40, seed=9)
    p = loaded.probabilities(features(test, ["other"] * 40, ["easy"] * 40))
    # weak where it is better, strong elsewhere (the clusters overlap a little)
    assert np.mean(p.argmax(axis=1) == test_cluster) >= 0.9
    # calibrated: the mean estimate of each model is near its mean score
    assert p.mean(axis=0) == pytest.approx([0.52, 0.7], abs=0.06)


def test_the_guard_routes_like_the_best_single_model_when_the_estimate_cannot_beat_it(tmp_path):
    """Scores that do not depend on the request: routing on per-request noise cannot beat
    always-strong on held-out rows, so the predicted strategy sends everything there."""
    rng = np.random.default_rng(3)
    vectors, _ = clustered(400)
    y = np.stack([rng.random(400) < 0.5, rng.random(400) < 0.6], axis=1).astype(float)
    cost = np.zeros_like(y)
    predictor, report = training.train_predictor(training_set(vectors, y, cost), lambda _: None)
    assert [g["beats_best_single"] for g in report["guard"]] == [False]
    assert not predictor.trusted(0.0)
    predictor.save(tmp_path / "noise.npz")
    synthetic = bench(y, vectors, np.zeros(400, bool))
    policy = routing_replay.build_policy(
        SIGNALS, synthetic.cards(), "predicted", 0.0, predictor={"path": tmp_path / "noise.npz"}
    )
    picks = routing_replay.replay(synthetic, np.arange(400), policy)
    assert picks.tolist() == [1] * 400


def test_the_predicted_strategy_trades_quality_for_cost_and_never_loses_to_one_model(tmp_path):
    vectors, cluster = clustered(600)
    y = np.stack([cluster == 0, np.ones(600, bool)], axis=1).astype(float)
    synthetic = bench(y, vectors, np.arange(600) < 400)
    section = routing_strong_weak.strong_weak(synthetic, SIGNALS, tmp_path)
    curve = section["curves"]["predicted"]
    # the strong model is needed on half the requests: 95% of its accuracy takes about half
    assert curve["strong_share_needed"] == pytest.approx(0.45, abs=0.06)
    assert max(p["accuracy"] for p in curve["points"]) == 1.0


def test_knn_gives_every_model_k_labelled_neighbours():
    """A model labelled only on far-away rows still gets k neighbours, not its prior."""
    near = np.tile(np.eye(4, dtype=np.float32)[0], (5, 1))
    far = np.tile(np.array([0.6, 0.8, 0, 0], dtype=np.float32), (2, 1))
    labels = np.array([[1, np.nan]] * 5 + [[np.nan, 1.0]] * 2, dtype=np.float32)
    index = KnnIndex(np.vstack([near, far]), labels, ("a", "b"))
    estimate = index.estimate(np.eye(4, dtype=np.float32)[0], {"a": 0.5, "b": 0.0}, 2, 0.0)
    assert estimate == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_labelled_files_carry_optional_costs_and_tokens_and_refuse_bad_ones(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(
        json.dumps(
            {
                "prompt": "hi",
                "scores": {"a": 0.5, "b": 1},
                "cost": {"a": 0.001},
                "tokens": {"b": [10, 20]},
            }
        )
        + "\n"
    )
    data = read_labelled(path)
    assert data.models == ["a", "b"]
    assert data.costs == [{"a": 0.001}] and data.tokens == [{"b": (10, 20)}]
    assert np.isnan(data.matrix(data.costs, data.models)[0, 1])
    path.write_text(json.dumps({"text": "hi", "labels": {"a": 1}, "cost": {"a": -1}}) + "\n")
    with pytest.raises(LabelsError, match=r"set\.jsonl:1: costs must be"):
        read_labelled(path)
    path.write_text(json.dumps({"text": "hi", "labels": {"a": 1}, "tokens": {"a": [1]}}) + "\n")
    with pytest.raises(LabelsError, match=r"set\.jsonl:1: tokens must be"):
        read_labelled(path)


def test_eval_routing_on_a_labelled_file_is_cross_fitted_and_beats_one_model(tmp_path, capsys):
    """`wrp eval routing --data`: the small model answers greetings, only the large one
    proofs; every row is routed by a predictor that never saw it."""
    from pipeline.cli import main

    rows = []
    for i in range(40):
        rows.append(
            {
                "text": f"prove that there are infinitely many primes of the form 4k+{i}",
                "labels": {"small": 0, "large": 1},
                "cost": {"small": 0.0001, "large": 0.002},
            }
        )
        rows.append(
            {
                "text": f"say good morning to my neighbour number {i}, kindly",
                "labels": {"small": 1, "large": 1},
                "cost": {"small": 0.0001, "large": 0.002},
            }
        )
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    argv = ["eval", "routing", "--data", str(path), "--folds", "4", "--state-dir", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "routing-mine.json").read_text())
    assert (tmp_path / "out" / "routing-mine.png").stat().st_size > 0
    assert report["rows"] == 80 and len(report["training"]) == 4
    assert report["best_single"]["model"] == "large"
    predicted = report["routed"]["predicted"]
    # large on the proofs, small on the greetings: the best single's accuracy at about half
    # its cost
    assert predicted["against_best_single"] == "matches"  # large is always right
    assert predicted["best_accuracy"] == 1.0
    assert predicted["cost_per_1k_for_95pct_of_best_single"] < 0.6 * 2.0
    assert "predicted: accuracy at the best single's cost" in capsys.readouterr().out
    # a missing file and a file without labels are one-line errors
    assert main(["eval", "routing", "--data", str(tmp_path / "none.jsonl")]) == 2
    assert main(["router", "train", "--state-dir", str(tmp_path)]) == 2
    assert "give a labels file" in capsys.readouterr().err


def test_analytics_rows_merge_repeats_of_a_prompt_and_skip_unreadable_ones():
    from pipeline.router.labelled import from_analytics

    def row(text, model, score, feedback=1, envelope=None):
        request = {"request_id": "r", "body": {"messages": [{"role": "user", "content": text}]}}
        return ["r", "d", model, "ok", 10, 20, 0.001, score, feedback,
                envelope or json.dumps({"request": request})]  # fmt: skip

    columns = ["request_id", "decision", "model", "status", "prompt_tokens",
               "completion_tokens", "cost_usd", "score", "feedback", "envelope"]  # fmt: skip
    rows = [
        row("what is 2+2", "a", 1.0),
        row("what is 2+2", "a", 0.0),
        row("what is 2+2", "b", 1.0),
        row("failed call", "b", 0.0, feedback=0),
        row("x", "a", 1.0, envelope="{not json"),
    ]
    data, skipped = from_analytics(columns, rows)
    assert skipped == 1
    assert data.texts == ["what is 2+2", "failed call"]
    assert data.labels == [{"a": 0.5, "b": 1.0}, {"b": 0.0}]


def test_a_model_with_few_labels_is_estimated_at_its_mean():
    scores = np.linspace(0, 1, 5)
    a, b = training.platt(scores, np.array([1.0, 0, 1, 1, 1]))
    assert a == 0.0 and training.sigmoid(b) == pytest.approx(0.8)


def test_eval_routing_refuses_a_file_no_row_of_which_compares_the_models(tmp_path, capsys):
    from pipeline.cli import main

    path = tmp_path / "sparse.jsonl"
    lines = [{"text": f"question {i}", "labels": {("a" if i % 2 else "b"): 1}} for i in range(20)]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert main(["eval", "routing", "--data", str(path), "--state-dir", str(tmp_path)]) == 2
    assert "fewer than two requests carry every model's label" in capsys.readouterr().err
    assert main(["eval", "routing", "--data", str(path), "--folds", "1"]) == 2
