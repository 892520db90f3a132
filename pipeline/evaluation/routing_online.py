"""Part 3 of ``wrp eval routing``: online learning on a stream of MMLU-Pro eval rows, feedback
folded with the learner's own rules; regret against the best fixed model and the oracle."""

from __future__ import annotations

import numpy as np

from pipeline.envelope import Feedback, RouterState, router_state_key
from pipeline.evaluation.progress import progress
from pipeline.evaluation.routing_replay import HALF_LIFE_S, ROUTER_SEED, Bench, build_policy
from pipeline.learn.evidence import Served, credit_feedback, fold
from pipeline.policy import Policy, SignalsConfig
from pipeline.router.route import RouterRuntime, route

STREAM_SEED = 7
#: Trailing window of the running accuracy in part 3 (requests).
WINDOW = 500
ONLINE = ("thompson", "contextual", "knn", "predicted")


def learn(bench: Bench, order: np.ndarray, policy: Policy) -> tuple[np.ndarray, float]:
    """Route the stream at one request per second, crediting each answer's recorded correctness
    as feedback through the learner's rules; the rewards in stream order and the explored share."""
    arms: dict[str, RouterState] = {}
    runtime = RouterRuntime(arms=arms, rng=np.random.default_rng(ROUTER_SEED))
    position = {model: i for i, model in enumerate(bench.models)}
    half_life = policy.router.learning.half_life_s
    rewards, explored = np.zeros(len(order)), 0
    for t, row in enumerate(order):
        envelope = bench.envelope(int(row))
        decision = route(envelope, policy, runtime)
        explored += decision.explored
        rewards[t] = bench.correct[row, position[decision.model]]
        feedback = Feedback(
            request_id=envelope.request.request_id,
            score=rewards[t],
            source="eval",
            created_at=float(t),
        )
        served = Served(decision.decision, decision.model, decision.prior, tuple(decision.context))
        credit = credit_feedback(feedback, served)
        key = router_state_key(credit.decision, credit.model)
        arms[key] = fold(arms.get(key), credit, half_life)
    return rewards, explored / len(order)


def trailing(rewards: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` rewards at each step (NaN until the window is full)."""
    total = np.concatenate([[0.0], np.cumsum(rewards)])
    out = np.full(len(rewards), np.nan)
    out[window - 1 :] = (total[window:] - total[:-window]) / window
    return out


def requests_to_reach(rewards: np.ndarray, target: float, window: int) -> int | None:
    """Requests served until the trailing accuracy first reaches ``target``."""
    hits = np.flatnonzero(trailing(rewards, window) >= target)
    return int(hits[0]) + 1 if len(hits) else None


def online(bench: Bench, rows: np.ndarray, signals: SignalsConfig, router: dict) -> dict:
    """Thompson, contextual, knn and predicted learning from a shuffled stream of ``rows``:
    regret against the best fixed model (chosen in hindsight on the stream) and the oracle, the
    regret after :data:`WINDOW` requests, and requests until 90% of the best fixed accuracy."""
    order = np.random.default_rng(STREAM_SEED).permutation(rows)
    correct = bench.correct[order]
    best = int(correct.mean(0).argmax())
    fixed, ceiling = correct[:, best], correct.max(1)
    target = 0.9 * float(fixed.mean())
    step = max(1, len(order) // 250)
    runs = {}
    for strategy in ONLINE:
        progress(f"online {strategy}: {len(order)} requests")
        policy = build_policy(signals, bench.cards(), strategy, 0.0, **router)
        rewards, explored = learn(bench, order, policy)
        every = slice(step - 1, None, step)
        runs[strategy] = {
            "accuracy": round(float(rewards.mean()), 4),
            "explored_share": round(explored, 4),
            "requests_to_target": requests_to_reach(rewards, target, WINDOW),
            "regret_vs_best_fixed": round(float((fixed - rewards).sum()), 1),
            "regret_vs_best_fixed_at_window": round(float((fixed - rewards)[:WINDOW].sum()), 1),
            "regret_vs_oracle": round(float((ceiling - rewards).sum()), 1),
            "curve": {
                "t": list(range(step, len(order) + 1, step)),
                "regret_vs_best_fixed": np.cumsum(fixed - rewards)[every].round(1).tolist(),
                "regret_vs_oracle": np.cumsum(ceiling - rewards)[every].round(1).tolist(),
                "trailing_accuracy": [
                    None if np.isnan(v) else round(float(v), 4)
                    for v in trailing(rewards, WINDOW)[every]
                ],
            },
        }
    return {
        "requests": len(order),
        "stream_seed": STREAM_SEED,
        "router_seed": ROUTER_SEED,
        "window": WINDOW,
        "half_life_s": HALF_LIFE_S,
        "cost_weight": 0.0,
        "feedback": "the served model's recorded correctness as score 1/0, folded before the "
        "next request (one request per second)",
        "priors": "flat card priors (0.5); knn also has the train-row index (policy "
        "defaults), predicted the success predictor of the train rows",
        "best_fixed": {"model": bench.models[best], "accuracy": round(float(fixed.mean()), 4)},
        "oracle_accuracy": round(float(ceiling.mean()), 4),
        "target_accuracy": round(target, 4),
        "strategies": runs,
    }
