"""The policy file: models, pools, signals, safety, routing decisions, budgets and tools (YAML,
validated).

One module per section of the file (``models``, ``pools``, ``signals``, ``safety``, ``router``,
``budgets``, ``tools``), each with its own validators; decision rules and their evaluation in
``rules``; the whole file, its references across sections and :func:`load_policy` in
``document``; `wrp policy check` in ``check`` and hot reload in ``reload``. The names below are
the public API: import them from ``pipeline.policy``.
"""

from pipeline.policy.budgets import Budget, BudgetAction, BudgetMetric, BudgetScope, BudgetWindow
from pipeline.policy.document import Policy, PolicyError, load_policy, parse_policy
from pipeline.policy.models import ModelCard, Price
from pipeline.policy.pools import (
    BasePolicy,
    CircuitConfig,
    Endpoint,
    Pool,
    PoolAuth,
    SelectionConfig,
    SelectionPolicy,
    SimulatorConfig,
)
from pipeline.policy.router import (
    CacheConfig,
    CascadeConfig,
    ContextualConfig,
    DecisionSafety,
    DecisionSpec,
    Exploration,
    ImplicitConfig,
    KnnConfig,
    LearningConfig,
    PoolAwareConfig,
    PredictorConfig,
    RouterConfig,
    StickyConfig,
    Strategy,
    TenantRouting,
    ThompsonConfig,
)
from pipeline.policy.rules import RULE_SIGNALS, Condition, Rule
from pipeline.policy.safety import (
    AnswerScreening,
    ContrastiveConfig,
    HarmfulConfig,
    InjectionConfig,
    JailbreakConfig,
    ModerationConfig,
    PiiConfig,
    SafetyConfig,
    ScanConfig,
)
from pipeline.policy.signals import (
    ContextClass,
    EmbeddingRule,
    KeywordRule,
    LoadShapeConfig,
    SignalsConfig,
)
from pipeline.policy.tools import ToolSelectionConfig

__all__ = [
    "RULE_SIGNALS",
    "AnswerScreening",
    "BasePolicy",
    "Budget",
    "BudgetAction",
    "BudgetMetric",
    "BudgetScope",
    "BudgetWindow",
    "CacheConfig",
    "CascadeConfig",
    "CircuitConfig",
    "Condition",
    "ContextClass",
    "ContextualConfig",
    "ContrastiveConfig",
    "DecisionSafety",
    "DecisionSpec",
    "EmbeddingRule",
    "Endpoint",
    "Exploration",
    "HarmfulConfig",
    "ImplicitConfig",
    "InjectionConfig",
    "JailbreakConfig",
    "KeywordRule",
    "KnnConfig",
    "LearningConfig",
    "LoadShapeConfig",
    "ModelCard",
    "ModerationConfig",
    "PiiConfig",
    "Policy",
    "PolicyError",
    "Pool",
    "PoolAuth",
    "PoolAwareConfig",
    "PredictorConfig",
    "Price",
    "RouterConfig",
    "Rule",
    "SafetyConfig",
    "ScanConfig",
    "SelectionConfig",
    "SelectionPolicy",
    "SignalsConfig",
    "SimulatorConfig",
    "StickyConfig",
    "Strategy",
    "TenantRouting",
    "ThompsonConfig",
    "ToolSelectionConfig",
    "load_policy",
    "parse_policy",
]
