"""Train the router's success predictor (``wrp router train``): variants, cross-validation,
calibration and the held-out comparison with always-one-model.

Every variant scores s_m(x) per model from the request features x (embedding + domain and
complexity one-hots, :func:`pipeline.router.predictor.features`); labels are graded (0..1, NaN =
unknown) and a model is fitted only on the rows that have its label:

- ``linear``: per-model ridge regression of the label on x.
- ``low_rank``: the linear coefficients projected on the top-r directions of the models' fitted
  scores (reduced-rank regression: a low-rank model x request factorisation, after RouteLLM's
  matrix-factorisation router).
- ``pairwise``: the reference model (best mean label) by ridge; every other model as the
  reference plus how often they differ times (2 P(it beats the reference | x) - 1), with a
  logistic classifier trained on the rows where the two differ (the strong-vs-weak win
  probability of RouteLLM's classifier routers, against the reference).
- ``knn``: the similarity-weighted mean label of the k nearest labelled requests.

Folds are a hash of the prompt (:func:`pipeline.evaluation.split.fold_of`), so repeats of a
prompt never straddle a fold. Each variant's grid is widened while its best value sits on an
edge, so the chosen value is bracketed. Scores are calibrated per model with Platt scaling on
the out-of-fold scores; the variant with the best out-of-fold Brier score wins. The guard then
compares, on the same out-of-fold rows and for a range of cost weights, routing on the
calibrated estimates with always sending everything to the best single model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.evaluation.progress import progress
from pipeline.models.heads import sigmoid, train_head
from pipeline.router.neighbours import KnnIndex
from pipeline.router.predictor import GuardPoint, SuccessPredictor

FOLDS = 5
RIDGE_ALPHAS = (0.3, 3.0, 30.0)
PAIRWISE_L2 = (1e-4, 1e-3, 1e-2)
KNN_KS = (8, 32, 128)
KNN_PRIOR_WEIGHTS = (1.0, 8.0)
#: Grids are widened this many times at most while their best value is on an edge, and stop
#: widening once a step gains less than this much Brier score (a plateau brackets too).
MAX_WIDENINGS = 6
PLATEAU = 1e-5
#: The guard's cost weights, as multiples of (spread of mean labels) / (spread of mean costs).
GUARD_SCALES = (0.0, 1 / 64, 1 / 16, 1 / 4, 1.0, 4.0, 16.0)
#: The guard needs this many rows with every model's label.
MIN_GUARD_ROWS = 50
#: A model with fewer labels is estimated at its mean label (too few to calibrate a curve).
MIN_CALIBRATION_LABELS = 30


@dataclass
class TrainingSet:
    """Labelled requests: features, graded labels (NaN = unknown), optional USD per 1,000 such
    requests per model, and each row's fold."""

    x: np.ndarray  # N x F
    y: np.ndarray  # N x M
    models: list[str]
    folds: np.ndarray  # N
    dims: int  # embedding dimensions at the front of x
    cost: np.ndarray | None = None  # N x M

    def rows(self, keep: np.ndarray) -> TrainingSet:
        return TrainingSet(
            self.x[keep],
            self.y[keep],
            self.models,
            self.folds[keep],
            self.dims,
            None if self.cost is None else self.cost[keep],
        )


class Ridge:
    """Per-model ridge regression on the rows that have a label, solved once for any alpha
    (one eigendecomposition per distinct label mask)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.n_models = y.shape[1]
        self.features = x.shape[1]
        # per label mask: its models, mean x, mean labels, eigenvalues and vectors of the
        # centred Gram matrix, and the centred x'y in the eigenbasis
        self.parts: list[
            tuple[list[int], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []
        groups: dict[bytes, list[int]] = {}
        for column in range(y.shape[1]):
            groups.setdefault((~np.isnan(y[:, column])).tobytes(), []).append(column)
        for columns in groups.values():
            known = ~np.isnan(y[:, columns[0]])
            if not known.any():
                continue
            xs, ys = x[known].astype(np.float64), y[known][:, columns].astype(np.float64)
            mean_x, mean_y = xs.mean(axis=0), ys.mean(axis=0)
            centred = xs - mean_x
            eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
            projected = vectors.T @ (centred.T @ (ys - mean_y))
            self.parts.append((columns, mean_x, mean_y, eigenvalues, vectors, projected))

    def solve(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (F x M) and intercepts (M); a model without labels scores 0.5."""
        coef = np.zeros((self.features, self.n_models))
        intercept = np.full(self.n_models, 0.5)
        for columns, mean_x, mean_y, eigenvalues, vectors, projected in self.parts:
            solved = vectors @ (projected / (eigenvalues + alpha)[:, None])
            coef[:, columns] = solved
            intercept[columns] = mean_y - mean_x @ solved
        return coef, intercept


def fitted(variant: str, models: list[str], base: np.ndarray, **parts: Any) -> SuccessPredictor:
    """An uncalibrated predictor (calibration a=1, b=0 scores through as logits)."""
    calibration = np.tile([1.0, 0.0], (len(models), 1))
    coef = parts.pop("coef", np.zeros((0, len(models))))
    intercept = parts.pop("intercept", np.zeros(len(models)))
    return SuccessPredictor(variant, tuple(models), coef, intercept, calibration, base, **parts)


def base_rates(y: np.ndarray) -> np.ndarray:
    """Mean label per model (0.5 for a model without labels)."""
    return np.where((~np.isnan(y)).any(axis=0), _nanmean(y), 0.5)


class Fitter:
    """Fits of every variant on one set of rows, sharing the expensive parts across settings."""

    def __init__(self, data: TrainingSet) -> None:
        self.data = data
        self.base = base_rates(data.y)
        labelled = (~np.isnan(data.y)).sum(axis=0)
        # the best mean among the models labelled on at least half as many rows as the most
        self.reference = int(np.where(labelled * 2 >= labelled.max(), self.base, -1).argmax())
        self._linear: Ridge | None = None

    def _fitted(self, variant: str, **parts: Any) -> SuccessPredictor:
        return fitted(variant, self.data.models, self.base, **parts)

    def linear(self, alpha: float) -> SuccessPredictor:
        if self._linear is None:
            self._linear = Ridge(self.data.x, self.data.y)
        coef, intercept = self._linear.solve(alpha)
        return self._fitted("linear", coef=coef, intercept=intercept)

    def low_rank(self, alpha: float, rank: int) -> SuccessPredictor:
        full = self.linear(alpha)
        scores = self.data.x @ full.coef
        _, _, right = np.linalg.svd(scores - scores.mean(axis=0), full_matrices=False)
        keep = right[:rank].T @ right[:rank]
        coef = full.coef @ keep
        residual = self.data.y - self.data.x @ coef
        intercept = np.where(np.isnan(residual).all(axis=0), 0.5, _nanmean(residual))
        return self._fitted("low_rank", coef=coef, intercept=intercept)

    def pairwise(self, alpha: float, l2: float) -> SuccessPredictor:
        """The reference by ridge; per other model a logistic classifier of whether it beats the
        reference, trained on the rows where their labels differ."""
        ref = self.reference
        linear = self.linear(alpha)
        margins = self.data.y - self.data.y[:, [ref]]
        wins = np.where(np.abs(margins) > 1e-9, (margins > 0).astype(float), np.nan)
        wins[:, ref] = np.nan
        head = train_head(
            "pairwise", "sigmoid", self.data.models, self.data.x, wins, l2=l2, epochs=30, seed=0
        )
        disagreement = np.where(np.isnan(margins), np.nan, np.abs(margins))
        spread = np.nan_to_num(_nanmean(disagreement))
        coef, intercept = head.weights[0].astype(np.float64), head.weights[1].astype(np.float64)
        coef[:, ref], intercept[ref] = linear.coef[:, ref], linear.intercept[ref]
        return self._fitted(
            "pairwise", coef=coef, intercept=intercept, reference=ref, spread=spread
        )

    def knn(self, k: int, prior_weight: float) -> SuccessPredictor:
        embeddings = self.data.x[:, : self.data.dims]
        index = KnnIndex(embeddings, self.data.y.astype(np.float32), tuple(self.data.models))
        return self._fitted("knn", neighbours=index, k=int(k), prior_weight=prior_weight)


def _nanmean(values: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    return np.nansum(values, axis=0) / np.maximum(known.sum(axis=0), 1)


def platt(scores: np.ndarray, labels: np.ndarray, l2: float = 1e-3) -> tuple[float, float]:
    """a, b of p = sigmoid(a * s + b) minimising cross-entropy with graded labels (Newton)."""
    known = ~np.isnan(labels)
    s, y = scores[known].astype(np.float64), labels[known].astype(np.float64)
    rate = float(np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3))
    if len(s) < MIN_CALIBRATION_LABELS or np.ptp(s) < 1e-12:
        return 0.0, float(np.log(rate / (1 - rate)))
    a = 1.0 / max(float(s.std()), 1e-6)
    b = -a * float(s.mean()) + float(np.log(rate / (1 - rate)))
    for _ in range(50):
        p = sigmoid(a * s + b)
        g = np.array([((p - y) * s).sum() + l2 * a, (p - y).sum()])
        w = p * (1 - p)
        h = np.array([[(w * s * s).sum() + l2, (w * s).sum()], [(w * s).sum(), w.sum() + 1e-9]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def calibrate(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-model Platt parameters (M x 2)."""
    return np.array([platt(scores[:, m], y[:, m]) for m in range(y.shape[1])])


def calibrated(scores: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    return sigmoid(calibration[:, 0] * scores + calibration[:, 1])


def brier(p: np.ndarray, y: np.ndarray) -> float:
    known = ~np.isnan(y)
    return float(np.mean((p[known] - y[known]) ** 2))


Setting = tuple[float, ...]


class CrossValidation:
    """Out-of-fold scores of every variant and setting on one training set."""

    def __init__(self, data: TrainingSet) -> None:
        self.data = data
        self.fold_ids = [f for f in np.unique(data.folds)]
        self.fitters = {f: Fitter(data.rows(data.folds != f)) for f in self.fold_ids}
        self.results: dict[tuple[str, Setting], float] = {}
        self.oof: dict[tuple[str, Setting], np.ndarray] = {}

    def scores(self, variant: str, setting: Setting) -> np.ndarray:
        key = (variant, setting)
        if key not in self.oof:
            out = np.zeros(self.data.y.shape)
            for f, fitter in self.fitters.items():
                held = self.data.folds == f
                out[held] = _fit(fitter, variant, setting).scores(self.data.x[held])
            self.oof[key] = out
        return self.oof[key]

    def brier(self, variant: str, setting: Setting) -> float:
        key = (variant, setting)
        if key not in self.results:
            scores = self.scores(variant, setting)
            self.results[key] = brier(
                calibrated(scores, calibrate(scores, self.data.y)), self.data.y
            )
        return self.results[key]


def _fit(fitter: Fitter, variant: str, setting: Setting) -> SuccessPredictor:
    if variant == "linear":
        return fitter.linear(setting[0])
    if variant == "pairwise":
        return fitter.pairwise(setting[0], setting[1])
    if variant == "low_rank":
        return fitter.low_rank(setting[0], int(setting[1]))
    return fitter.knn(int(setting[0]), setting[1])


def bracketed(
    evaluate: Callable[[float], float],
    grid: list[float],
    widen: Callable[[float, int], float | None],
) -> tuple[float, dict[float, float]]:
    """The grid value with the lowest ``evaluate``; while it sits on an edge the grid is widened
    past that edge (``widen(value, direction)``, None when it cannot go further)."""
    results = {value: evaluate(value) for value in grid}
    for _ in range(MAX_WIDENINGS):
        ordered = sorted(results)
        best = min(results, key=results.__getitem__)
        if best not in (ordered[0], ordered[-1]) or len(ordered) < 2:
            break
        nxt = widen(best, -1 if best == ordered[0] else 1)
        if nxt is None or nxt in results:
            break
        results[nxt] = evaluate(nxt)
        if results[nxt] > results[best] - PLATEAU:
            break
    return min(results, key=results.__getitem__), results


def select(cv: CrossValidation, progress: Callable[[str], None]) -> tuple[str, Setting, dict]:
    """The variant and setting with the best out-of-fold Brier score, and every score tried."""
    data = cv.data
    report: dict[str, dict[str, float]] = {}
    best: dict[str, tuple[Setting, float]] = {}

    def scale(value: float, direction: int) -> float:
        return value * (10.0**direction)

    alpha, tried = bracketed(lambda a: cv.brier("linear", (a,)), list(RIDGE_ALPHAS), scale)
    report["linear"] = {f"alpha={a:g}": round(s, 5) for a, s in sorted(tried.items())}
    best["linear"] = ((alpha,), tried[alpha])
    progress(f"predictor cv: linear alpha={alpha:g} brier {tried[alpha]:.4f}")
    if len(data.models) >= 2:
        l2, tried = bracketed(lambda w: cv.brier("pairwise", (alpha, w)), list(PAIRWISE_L2), scale)
        report["pairwise"] = {
            f"alpha={alpha:g} l2={w:g}": round(s, 5) for w, s in sorted(tried.items())
        }
        best["pairwise"] = ((alpha, l2), tried[l2])
        progress(f"predictor cv: pairwise l2={l2:g} brier {tried[l2]:.4f}")
    if len(data.models) >= 3:
        most = len(data.models) - 1

        def widen_rank(rank: float, direction: int) -> float | None:
            if direction > 0:
                return float(min(rank * 2, most)) if rank < most else None
            return rank // 2 if rank >= 2 else None

        ranks = [float(r) for r in (1, 2, 4, 8) if r <= most]
        rank, tried = bracketed(lambda r: cv.brier("low_rank", (alpha, r)), ranks, widen_rank)
        report["low_rank"] = {
            f"alpha={alpha:g} rank={r:g}": round(s, 5) for r, s in sorted(tried.items())
        }
        best["low_rank"] = ((alpha, rank), tried[rank])
        progress(f"predictor cv: low_rank rank={rank:g} brier {tried[rank]:.4f}")
    train_rows = int((data.folds != cv.fold_ids[0]).sum())
    knn_best: tuple[Setting, float] | None = None
    report["knn"] = {}
    for weight in KNN_PRIOR_WEIGHTS:

        def widen_k(k: float, direction: int) -> float | None:
            if direction > 0:
                return float(min(k * 4, train_rows)) if k < train_rows else None
            return float(k // 4) if k >= 4 else None

        ks = [float(k) for k in KNN_KS if k <= train_rows] or [float(train_rows)]
        k, tried = bracketed(lambda k, w=weight: cv.brier("knn", (k, w)), ks, widen_k)
        report["knn"].update(
            {f"k={kk:g} prior_weight={weight:g}": round(s, 5) for kk, s in sorted(tried.items())}
        )
        if knn_best is None or tried[k] < knn_best[1]:
            knn_best = ((k, weight), tried[k])
    assert knn_best is not None
    best["knn"] = knn_best
    progress(f"predictor cv: knn k={knn_best[0][0]:g} brier {knn_best[1]:.4f}")
    variant = min(best, key=lambda v: best[v][1])
    return variant, best[variant][0], report


def guard(p: np.ndarray, data: TrainingSet) -> tuple[tuple[GuardPoint, ...], np.ndarray | None]:
    """Held-out utility of routing on ``p`` against the best single model, per cost weight, with
    the standard error of their paired difference, on the rows with every model's label (no
    guard with fewer than :data:`MIN_GUARD_ROWS`); and the models' means on those rows. The
    router picks with each model's mean cost (it cannot know an answer's cost in advance);
    utilities count the rows' actual costs."""
    complete = ~np.isnan(data.y).any(axis=1)
    if complete.sum() < MIN_GUARD_ROWS:
        return (), None
    y, p = data.y[complete], p[complete]
    cost = np.zeros_like(y) if data.cost is None else data.cost[complete]
    means, mean_cost = y.mean(axis=0), cost.mean(axis=0)
    spread = float(np.ptp(mean_cost))
    unit = float(np.ptp(means) + 0.01) / spread if spread > 0 else 0.0
    points = []
    rows = np.arange(len(y))
    for factor in GUARD_SCALES if unit > 0 else (0.0,):
        lam = factor * unit
        picks = (p - lam * mean_cost).argmax(axis=1)
        single = int((means - lam * mean_cost).argmax())
        routed = y[rows, picks] - lam * cost[rows, picks]
        difference = routed - (y[:, single] - lam * cost[:, single])
        points.append(
            GuardPoint(
                round(lam, 8),
                round(float(routed.mean()), 6),
                round(float(means[single] - lam * mean_cost[single]), 6),
                data.models[single],
                round(float(difference.std(ddof=1) / np.sqrt(len(difference))), 6),
            )
        )
    return tuple(points), means


def train_predictor(
    data: TrainingSet, progress: Callable[[str], None] = progress
) -> tuple[SuccessPredictor, dict]:
    """Select, calibrate and fit the predictor on every row of ``data``; the report says what
    was tried and how the winner compared with always-one-model on held-out rows."""
    if len(np.unique(data.folds)) < 2:
        raise ValueError("cross-validation needs at least two folds of labelled requests")
    cv = CrossValidation(data)
    variant, setting, tried = select(cv, progress)
    oof = cv.scores(variant, setting)
    calibration = calibrate(oof, data.y)
    p = calibrated(oof, calibration)
    points, fallback = guard(p, data)
    fitter = Fitter(data)
    predictor = replace(
        _fit(fitter, variant, setting),
        calibration=calibration,
        guard=points,
        fallback=fallback,
        meta={
            "rows": len(data.y),
            "labels": int((~np.isnan(data.y)).sum()),
            "folds": len(cv.fold_ids),
            "setting": list(setting),
            "brier": round(cv.brier(variant, setting), 5),
            "brier_of_base_rates": round(
                brier(np.broadcast_to(fitter.base, data.y.shape), data.y), 5
            ),
        },
    )
    report = {
        "variant": variant,
        "setting": list(setting),
        "cv_brier": tried,
        **predictor.meta,
        "guard": [{**g.__dict__, "beats_best_single": g.beats} for g in points],
    }
    return predictor, report


def render_training(report: dict) -> str:
    """What was tried, what won and how it compares with always-one-model."""
    lines = [
        f"success predictor: {report['variant']} {report['setting']} on {report['rows']} "
        f"requests ({report['labels']} labels), {report['folds']}-fold cross-validated Brier "
        f"{report['brier']} (base rates alone: {report['brier_of_base_rates']})",
    ]
    for variant, tried in report["cv_brier"].items():
        lines.append(f"  {variant}: " + ", ".join(f"{k} {v}" for k, v in tried.items()))
    if not report["guard"]:
        lines.append(
            f"  fewer than {MIN_GUARD_ROWS} requests carry every model's label: no held-out "
            "comparison with always-one-model (the predictor is used at every cost weight)"
        )
    for g in report["guard"]:
        verdict = "beats" if g["beats_best_single"] else "does NOT beat (routes like it there)"
        lines.append(
            f"  cost weight {g['cost_weight']:g}: held-out utility {g['router']:.4f} {verdict} "
            f"always {g['model']} ({g['best_single']:.4f})"
        )
    return "\n".join(lines)
