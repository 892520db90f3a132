"""Replaying benchmark requests through the real router: a :class:`Bench` of requests with
each model's recorded score and cost, the policy that routes them, the cost-weight sweep and the
curve metrics (frontier, crossings, the oracle). Used by ``wrp eval routing``'s built-in parts
and by its cross-fitted evaluation of any labelled set."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.envelope import ChatRequest, Envelope, RequestSection, Safety, Signals
from pipeline.evaluation.embedding_cache import EmbeddingCache
from pipeline.evaluation.predictor_training import FOLDS, TrainingSet, train_predictor
from pipeline.evaluation.progress import progress
from pipeline.evaluation.split import fold_of
from pipeline.policy import Policy, SignalsConfig
from pipeline.router.neighbours import KnnIndex
from pipeline.router.predictor import features
from pipeline.router.route import RouterRuntime, route
from pipeline.workload.extractor import SignalExtractor

DECISION = "eval"
#: Context is not modelled: every model answered every benchmark question.
CONTEXT_LENGTH = 1_000_000
#: The headline asks for this share of the strong model's accuracy.
TARGET = 0.95
CASCADE_CHECKS = ["empty", "refusal", "arithmetic"]
#: Operating points of a sweep at most; it bisects where neighbouring points are far apart.
SWEEP_POINTS = 22
#: Cost weights of the sweeps, as multiples of 1 / (spread of the models' mean USD per 1k);
#: below 0 the router pays more for quality than its estimates alone would.
SCALES = (-4.0, -1.0, -0.25, -1 / 16, 0.0, 1 / 64, 1 / 16, 1 / 4, 1.0, 4.0, 16.0, 64.0)
#: Per-domain quality priors need at least this many train rows in the domain.
MIN_DOMAIN_ROWS = 30
ROUTER_SEED = 0
#: Learner half-life of the replays (one request per second): ~32 years, i.e. no decay.
HALF_LIFE_S = 1e9
ALLOWED = Safety(action="allow", jailbreak_score=0.0)


# --- curves ----------------------------------------------------------------------------------


def frontier(xs: list[float], ys: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The operating points nothing beats (no other is as cheap and more accurate), by x.
    Mixing two operating points reaches any point on the line between them."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    kept: list[int] = []
    for i in np.lexsort((-y, x)):
        if not kept or y[i] > y[kept[-1]]:
            kept.append(int(i))
    return x[kept], y[kept]


def first_crossing(xs: list[float], ys: list[float], target: float) -> float | None:
    """The least x at which the curve reaches accuracy ``target`` (None if it never does)."""
    fx, fy = frontier(xs, ys)
    if target > fy[-1]:
        return None
    return float(fx[0]) if target <= fy[0] else float(np.interp(target, fy, fx))


def value_at(xs: list[float], ys: list[float], x0: float) -> float | None:
    """The curve's best accuracy at cost ``x0`` (None below its cheapest point)."""
    fx, fy = frontier(xs, ys)
    return None if x0 < fx[0] else float(np.interp(x0, fx, fy))


def rounded(value: float | None) -> float | None:
    """``value`` to four decimals, as the reports state numbers (None stays None)."""
    return None if value is None else round(value, 4)


def random_share(strong: float, weak: float, target: float) -> float:
    """Share p of strong calls at which random routing, p*strong + (1-p)*weak, reaches target."""
    if strong <= weak:
        return 0.0
    return float(np.clip((target - weak) / (strong - weak), 0.0, 1.0))


def oracle(correct: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the model with the best score, the cheapest among equals (unknown scores never
    win): its score and cost."""
    score = np.nan_to_num(correct, nan=-np.inf)
    best = np.where(score >= score.max(axis=1, keepdims=True), cost, np.inf)
    pick = best.argmin(axis=1)
    rows = np.arange(len(correct))
    return correct[rows, pick], cost[rows, pick]


def cost_weights(cost: np.ndarray) -> tuple[float, ...]:
    """The sweep's first cost weights for a (rows x models) cost matrix: :data:`SCALES` over
    the spread of the models' mean costs (only 0 when they all cost the same)."""
    spread = float(np.ptp(cost.mean(axis=0)))
    return tuple(sorted({s / spread for s in SCALES})) if spread > 0 else (0.0,)


def sweep(
    run: Callable[[float], dict], key: str, gap: float, lambdas: tuple[float, ...]
) -> list[dict]:
    """Operating points at ``lambdas``, then at midpoints of the neighbouring cost weights
    whose points differ most in ``key`` while that is more than ``gap``."""
    points = {lam: run(lam) for lam in lambdas}
    while len(points) < SWEEP_POINTS:
        ordered = sorted(points)
        size, lo, hi = max(
            (abs(points[a][key] - points[b][key]), a, b) for a, b in itertools.pairwise(ordered)
        )
        if size <= gap:
            break
        mid = _between(lo, hi)
        if mid in points:
            break
        points[mid] = run(mid)
    return [points[lam] for lam in sorted(points)]


def _between(lo: float, hi: float) -> float:
    """The geometric middle of two cost weights of one sign, else halfway towards 0."""
    if lo < 0 < hi:
        return 0.0
    if lo == 0 or hi == 0:
        return (lo + hi) / 2
    middle = math.sqrt(lo * hi)
    return middle if lo > 0 else -middle


# --- requests and policies -------------------------------------------------------------------


def usd_per_1k(
    prompt_tokens: np.ndarray, output_tokens: np.ndarray, prices: list[tuple[float, float]]
) -> np.ndarray:
    """USD of 1,000 such queries per (row, model); prices in USD per 1M input/output tokens."""
    price_in = np.array([p[0] for p in prices])
    price_out = np.array([p[1] for p in prices])
    return (prompt_tokens[:, None] * price_in + output_tokens * price_out) / 1e3


def card(name: str, price: tuple[float, float], quality: dict[str, float] | None = None) -> dict:
    return {
        "name": name,
        "pool": "eval",
        "context_length": CONTEXT_LENGTH,
        "price": {"input_per_mtok": price[0], "output_per_mtok": price[1]},
        "quality": quality or {},
    }


@dataclass
class Bench:
    """Rows of one benchmark: the request a user sends, its signals, and each model's
    correctness and cost."""

    name: str
    models: list[str]
    prices: list[tuple[float, float]]  # USD per 1M input / output tokens, per model
    requests: list[RequestSection]
    signals: list[Signals]
    vectors: np.ndarray
    correct: np.ndarray  # rows x models: 1/0, NaN = unknown
    cost: np.ndarray  # rows x models: USD per 1,000 such queries
    train: np.ndarray  # bool per row
    source: np.ndarray | None = None  # where each row comes from, for leave-one-source-out

    def text(self, row: int) -> str:
        """The prompt of ``row``, as the user sent it."""
        return self.requests[row].body.messages[-1].text()

    def envelope(self, row: int) -> Envelope:
        return Envelope(request=self.requests[row], signals=self.signals[row], safety=ALLOWED)

    def cards(self, quality: dict[str, dict[str, float]] | None = None) -> list[dict]:
        return [
            card(m, p, (quality or {}).get(m))
            for m, p in zip(self.models, self.prices, strict=True)
        ]

    def index(self, path: Path, rows: np.ndarray | None = None) -> Path:
        """A kNN index of the correctness of ``rows`` (the train rows), saved at ``path``."""
        rows = np.flatnonzero(self.train) if rows is None else rows
        KnnIndex(self.vectors[rows], self.correct[rows], tuple(self.models)).save(path)
        return path

    def training_set(self, rows: np.ndarray, salt: str) -> TrainingSet:
        """The success predictor's training set of ``rows``, folds by a salted prompt hash."""
        texts = [self.text(r) for r in rows]
        x = features(
            self.vectors[rows],
            [self.signals[r].domain for r in rows],
            [self.signals[r].complexity for r in rows],
        )
        folds = np.array([fold_of(f"{salt}:{t}", FOLDS) for t in texts])
        cost = self.cost[rows] if self.cost.any() else None
        return TrainingSet(x, self.correct[rows], self.models, folds, self.vectors.shape[1], cost)

    def predictor(self, path: Path, rows: np.ndarray | None = None) -> tuple[Path, dict]:
        """A success predictor trained on ``rows`` (the train rows), saved at ``path``, and its
        training report."""
        rows = np.flatnonzero(self.train) if rows is None else rows
        progress(f"{self.name}: training the success predictor on {len(rows)} rows")
        predictor, report = train_predictor(self.training_set(rows, "train"), progress)
        predictor.save(path)
        return path, report

    def domain_quality(self, rows: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """Per model, its accuracy on ``rows`` (the train rows) per predicted domain with at
        least :data:`MIN_DOMAIN_ROWS` rows, and overall as ``default``."""
        rows = np.flatnonzero(self.train) if rows is None else rows
        frame = pd.DataFrame(self.correct[rows], columns=self.models)
        frame["domain"] = [self.signals[row].domain for row in rows]
        groups = frame.groupby("domain")
        means = groups.mean()[groups.size() >= MIN_DOMAIN_ROWS]
        return {
            model: {
                "default": round(float(frame[model].mean()), 4),
                **{str(d): round(float(v), 4) for d, v in means[model].dropna().items()},
            }
            for model in self.models
        }


class Signaller:
    """Signals of benchmark texts from their cached embeddings, by the signal extractor's code."""

    def __init__(self, policy: Policy, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.extractor = SignalExtractor(policy, cache.encoder)

    def requests(
        self, name: str, texts: list[str]
    ) -> tuple[list[RequestSection], list[Signals], np.ndarray]:
        vectors = self.cache.embed(texts, name)
        requests = [
            RequestSection(
                request_id=f"{name}-{i}",
                body=ChatRequest(messages=[{"role": "user", "content": text}]),
            )
            for i, text in enumerate(texts)
        ]
        progress(f"signals of {len(texts)} {name} requests")
        return requests, self.extractor.from_embeddings(requests, texts, vectors), vectors


def build_policy(
    signals: SignalsConfig,
    cards: list[dict],
    strategy: str,
    cost_weight: float = 0.0,
    knn: dict | None = None,
    predictor: dict | None = None,
) -> Policy:
    """One decision over every card, with the configured signals and otherwise defaults."""
    return Policy.model_validate(
        {
            "models": cards,
            "pools": [{"name": "eval", "endpoints": [{"url": "http://127.0.0.1:9"}]}],
            "signals": signals,
            "safety": {"pii": {"entities": {"EMAIL_ADDRESS": "allow"}}},
            "router": {
                "default": {
                    "name": DECISION,
                    "models": [c["name"] for c in cards],
                    "strategy": strategy,
                    "cascade": {"checks": CASCADE_CHECKS},
                },
                "cost_weight": cost_weight,
                "knn": knn or {},
                "predictor": predictor or {},
                "learning": {"half_life_s": HALF_LIFE_S},
            },
        }
    )


def replay(bench: Bench, rows: np.ndarray, policy: Policy) -> np.ndarray:
    """The model each of ``rows`` is routed to (its position in ``bench.models``)."""
    runtime = RouterRuntime(rng=np.random.default_rng(ROUTER_SEED))
    position = {model: i for i, model in enumerate(bench.models)}
    return np.array([position[route(bench.envelope(int(r)), policy, runtime).model] for r in rows])
