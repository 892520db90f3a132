"""The ``router:`` section: decisions, selection strategies and their settings, learning."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from pipeline.envelope import ImplicitLabel, SafetyAction
from pipeline.policy.rules import Rule
from pipeline.policy.safety import PiiActions
from pipeline.policy.strict import Strict

#: Selection strategies, one module each under ``pipeline/router/strategies``.
Strategy = Literal[
    "static", "cost_quality", "knn", "predicted", "thompson", "contextual", "cascade"
]


class Exploration(Strict):
    """Bounds on the share of a decision's requests that explore (pick a model other than the
    one with the best estimate), measured over the router's recent choices."""

    floor: float = Field(0.0, ge=0, le=1, description="explore at least this often")
    ceiling: float = Field(0.25, ge=0, le=1, description="explore at most this often")

    @model_validator(mode="after")
    def _ordered(self) -> Exploration:
        if self.floor > self.ceiling:
            raise ValueError(f"floor {self.floor} is above ceiling {self.ceiling}")
        return self


class CacheConfig(Strict):
    """Semantic response cache: exact match, then embedding similarity >= ``similarity``."""

    enabled: bool = False
    similarity: float = Field(0.95, gt=0, le=1)
    ttl_s: float = Field(3600, gt=0)


CascadeCheck = Literal["empty", "refusal", "logprob", "arithmetic"]


class CascadeConfig(Strict):
    """Cheapest capable model first; escalate to the next when the answer fails a check."""

    checks: list[CascadeCheck] = ["empty", "refusal", "logprob"]
    min_mean_logprob: float = Field(
        -1.0, le=0, description="escalate below this mean token logprob, when the pool returns it"
    )
    max_models: int = Field(3, ge=2, description="models tried at most, escalations included")


class DecisionSafety(Strict):
    """Per-decision safety actions; they may only tighten the verdict (never loosen it)."""

    jailbreak_action: SafetyAction | None = None
    injection_action: SafetyAction | None = None
    harmful_action: SafetyAction | None = None
    moderation_action: SafetyAction | None = None
    pii: PiiActions = {}


class StickyConfig(Strict):
    """Sticky sessions: a session's next turn stays on the model that served its last one
    unless switching wins by more than the switch cost (``pipeline/router/sticky.py``)."""

    enabled: bool = Field(True, description="keep a session on its model while it is usable")
    margin: float = Field(
        0.2,
        ge=0,
        le=1,
        description="quality points a switch must win by besides the cache it loses (0.2: the "
        "cheapest margin that kept the quality estimate of sticky-off on half the sessions of "
        "`wrp eval sticky`; vLLM Semantic Router's switch margin + stay bias + handoff penalty)",
    )
    cached_input_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="price of a cached prompt token as a share of the model's input price "
        "(hosted providers bill 0.1-0.5)",
    )
    idle_s: float = Field(
        300,
        gt=0,
        le=86400,
        description="a session idle longer starts afresh: its KV cache is likely evicted",
    )


class DecisionSpec(Strict):
    name: str = Field(min_length=1)
    priority: int = 0
    when: Rule = Rule()
    models: list[str] = Field(min_length=1, description="candidates, in order of preference")
    strategy: Strategy = "static"
    cost_weight: float | None = Field(
        None,
        description="lambda: quality traded per USD of 1,000 such requests (below 0 pays more "
        "for quality than the estimates alone would)",
    )
    reasoning: bool = Field(False, description="turn on reasoning for models that have it")
    exploration: Exploration | None = None
    cache: CacheConfig | None = None
    cascade: CascadeConfig = CascadeConfig()
    safety: DecisionSafety | None = None
    sticky: StickyConfig | None = Field(None, description="overrides router.sticky")


class ThompsonConfig(Strict):
    """Beta prior of every arm: the card's quality prior q becomes Beta(q*n, (1-q)*n)."""

    prior_strength: float = Field(
        2.0, gt=0, description="n: how many observations the prior is worth"
    )


class ImplicitConfig(Strict):
    """Implicit feedback: the signals stage reads a session's next user turn as evidence about
    the previous answer (``pipeline.learn.implicit``)."""

    enabled: bool = Field(True, description="label next turns and send them as feedback")
    weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="what one implicit judgement counts for in the learner, against 1 for an "
        "explicit one (0: record the labels, learn nothing from them)",
    )
    rewards: dict[ImplicitLabel, float] = Field(
        {"moved_on": 0.75, "clarify": 0.4, "re_ask": 0.1, "says_wrong": 0.0},
        description="reward in [0, 1] of each label: moving on is weak approval (silence is "
        "not praise), a question about the answer half-understood, a repeated question or a "
        "complaint a failure",
    )
    re_ask_similarity: float = Field(
        0.85,
        ge=0,
        le=1,
        description="cosine between two user turns at or above which the second re-asks the "
        "first (chosen on the tune half of the hand labels, `wrp eval implicit`)",
    )
    max_gap_s: float = Field(
        900, gt=0, description="a next turn later than this after the previous says nothing"
    )

    @model_validator(mode="after")
    def _every_label_rewarded(self) -> ImplicitConfig:
        missing = set(get_args(ImplicitLabel)) - set(self.rewards)
        if missing:
            raise ValueError(f"rewards: give a reward for {', '.join(sorted(missing))}")
        bad = {k: v for k, v in self.rewards.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"rewards must lie in [0, 1] (got {bad})")
        return self


class LearningConfig(Strict):
    half_life_s: float = Field(
        7 * 86400, gt=0, description="evidence loses half its weight after this long"
    )
    slo_miss_penalty: float = Field(0.5, ge=0, le=1, description="failure weight of an SLO miss")
    implicit: ImplicitConfig = ImplicitConfig()


class KnnConfig(Strict):
    index: Path | None = Field(None, description="labelled neighbours (.npz, `wrp router index`)")
    k: int = Field(
        64,
        ge=1,
        description="neighbours per model (64: best held-out Brier on the train rows "
        "of RouteLLM MMLU, GSM8K and MMLU-Pro lies between 32 and 128)",
    )
    prior_weight: float = Field(2.0, ge=0, description="pseudo-neighbours at the card's prior")


class PredictorConfig(Strict):
    path: Path | None = Field(
        None, description="trained success predictor (.npz, `wrp router train`)"
    )
    prior_weight: float = Field(
        1000.0,
        gt=0,
        description="feedback observations the predictor's estimate is worth against the "
        "feedback's correction (lower follows drift sooner but chases the winner's curse: the "
        "model chosen most is the one most over-estimated)",
    )


class ContextualConfig(Strict):
    alpha: float = Field(0.3, ge=0, description="LinUCB confidence width")
    ridge: float = Field(1.0, gt=0, description="regulariser of each arm's design matrix")


class PoolAwareConfig(Strict):
    enabled: bool = True
    saturation: float = Field(
        0.9, gt=0, le=1, description="a pool this full (in flight / capacity) is skipped"
    )
    ttft_budget_ms: float | None = Field(
        None, gt=0, description="skip pools whose TTFT EWMA exceeds this (requests may set less)"
    )


class TenantRouting(Strict):
    cost_weight: float | None = Field(None, description="overrides decisions' lambda")
    explore: bool = Field(True, description="false freezes exploration: best estimate only")


class RouterConfig(Strict):
    decisions: list[DecisionSpec] = []
    default: DecisionSpec
    cost_weight: float = Field(0.0, description="lambda of decisions that set none")
    exploration: Exploration = Exploration()
    cache: CacheConfig = CacheConfig()
    thompson: ThompsonConfig = ThompsonConfig()
    learning: LearningConfig = LearningConfig()
    knn: KnnConfig = KnnConfig()
    predictor: PredictorConfig = PredictorConfig()
    contextual: ContextualConfig = ContextualConfig()
    pool_aware: PoolAwareConfig = PoolAwareConfig()
    sticky: StickyConfig = StickyConfig()
    tenants: dict[str, TenantRouting] = {}

    def find(self, name: str) -> DecisionSpec | None:
        return next((d for d in [*self.decisions, self.default] if d.name == name), None)

    def ordered(self) -> list[DecisionSpec]:
        """Decisions by descending priority, file order breaking ties; the default last."""
        ranked = sorted(enumerate(self.decisions), key=lambda p: (-p[1].priority, p[0]))
        return [d for _, d in ranked] + [self.default]
