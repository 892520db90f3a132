"""The policy file: models, pools, signals, safety and routing decisions (YAML, validated).

Load it with :func:`load_policy`; any problem raises :class:`PolicyError` whose lines name the
file, the path inside it, what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.envelope import SafetyAction

#: Signals a decision rule may test, with the Python type of their values.
RULE_SIGNALS: dict[str, type] = {
    "domain": str,
    "context_class": str,
    "prompt_tokens": int,
    "turns": int,
    "tools_present": bool,
    "images_present": bool,
    "jailbreak_score": float,
    "pii_found": bool,
    "tenant": str,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Price(Strict):
    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class ModelCard(Strict):
    name: str = Field(min_length=1)
    pool: str
    context_length: int = Field(gt=0)
    price: Price
    description: str = ""


class SimulatorProfile(Strict):
    """Latency of a simulated vLLM endpoint (see ``pipeline.pool.simulator``)."""

    prefill_ms_per_token: float = Field(0.05, ge=0)
    decode_ms_per_token: float = Field(10.0, ge=0)
    max_concurrency: int = Field(16, ge=1)


class Endpoint(Strict):
    url: str = Field(pattern=r"^https?://[^/]+", description="base URL; /v1/... is appended")


class Pool(Strict):
    name: str = Field(min_length=1)
    endpoints: list[Endpoint] = Field(min_length=1)
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(1, ge=0, le=5)
    simulator: SimulatorProfile | None = Field(
        None, description="when set, `wrp up` serves every endpoint of this pool with `wrp sim`"
    )


class ContextClass(Strict):
    name: str
    max_tokens: int = Field(gt=0)


class SignalsConfig(Strict):
    context_classes: list[ContextClass] = Field(min_length=1)
    domains: dict[str, list[str]] = Field(
        min_length=1, description="domain name -> example prompts (nearest-centroid)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> SignalsConfig:
        bounds = [c.max_tokens for c in self.context_classes]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(
                "context_classes must be listed in strictly increasing max_tokens order"
            )
        for name, examples in self.domains.items():
            if not examples:
                raise ValueError(f"domains.{name} has no example prompts; give at least one")
        return self


class JailbreakConfig(Strict):
    threshold: float = Field(0.75, ge=0, le=1, description="cosine similarity to an example")
    action: SafetyAction = "block"
    examples: list[str] = Field(min_length=1)


class PiiConfig(Strict):
    action: SafetyAction = "redact"
    entities: list[str] = Field(min_length=1)


class SafetyConfig(Strict):
    jailbreak: JailbreakConfig
    pii: PiiConfig
    refusal: str = "I can't help with that request."


class Condition(Strict):
    """One test of a signal; exactly one operator is set."""

    signal: str
    equals: str | int | float | bool | None = None
    not_equals: str | int | float | bool | None = None
    in_: list[str | int] | None = Field(None, alias="in")
    gte: float | None = None
    lte: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        if self.signal not in RULE_SIGNALS:
            raise ValueError(
                f"unknown signal {self.signal!r}; use one of: {', '.join(RULE_SIGNALS)}"
            )
        ops = [
            k for k in ("equals", "not_equals", "in_", "gte", "lte") if getattr(self, k) is not None
        ]
        if len(ops) != 1:
            raise ValueError(
                "a condition needs exactly one operator of equals, not_equals, in, gte, lte; "
                f"found {len(ops)}"
            )
        return self

    def holds(self, value: Any) -> bool:
        if self.equals is not None:
            return value == self.equals
        if self.not_equals is not None:
            return value != self.not_equals
        if self.in_ is not None:
            return value in self.in_
        if self.gte is not None:
            return value is not None and value >= self.gte
        return value is not None and self.lte is not None and value <= self.lte


class Rule(Strict):
    """``all`` conditions must hold and, if given, at least one of ``any``."""

    all: list[Condition] = []
    any: list[Condition] = []

    def holds(self, values: dict[str, Any]) -> bool:
        if not all(c.holds(values.get(c.signal)) for c in self.all):
            return False
        return not self.any or any(c.holds(values.get(c.signal)) for c in self.any)


Strategy = Literal["static", "thompson"]


class DecisionSpec(Strict):
    name: str = Field(min_length=1)
    priority: int = 0
    when: Rule = Rule()
    models: list[str] = Field(min_length=1, description="candidates, in order of preference")
    strategy: Strategy = "static"


class ThompsonConfig(Strict):
    prior_alpha: float = Field(1.0, gt=0)
    prior_beta: float = Field(1.0, gt=0)


class RouterConfig(Strict):
    decisions: list[DecisionSpec] = []
    default: DecisionSpec
    thompson: ThompsonConfig = ThompsonConfig()

    def ordered(self) -> list[DecisionSpec]:
        """Decisions by descending priority, file order breaking ties; the default last."""
        ranked = sorted(enumerate(self.decisions), key=lambda p: (-p[1].priority, p[0]))
        return [d for _, d in ranked] + [self.default]


class Policy(Strict):
    version: Literal[1] = 1
    models: list[ModelCard] = Field(min_length=1)
    pools: list[Pool] = Field(min_length=1)
    signals: SignalsConfig
    safety: SafetyConfig
    router: RouterConfig

    @model_validator(mode="after")
    def _references(self) -> Policy:
        pools = [p.name for p in self.pools]
        models = [m.name for m in self.models]
        problems: list[str] = []
        for label, names in (("pools", pools), ("models", models)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                problems.append(f"{label}: duplicate name(s) {dupes}; names must be unique")
        for i, card in enumerate(self.models):
            if card.pool not in pools:
                problems.append(
                    f"models[{i}].pool: unknown pool {card.pool!r}; declare it under pools: "
                    f"or use one of {pools}"
                )
        decisions = [*self.router.decisions, self.router.default]
        for i, spec in enumerate(decisions):
            where = "router.default" if spec is self.router.default else f"router.decisions[{i}]"
            for j, model in enumerate(spec.models):
                if model not in models:
                    problems.append(
                        f"{where}.models[{j}]: unknown model {model!r}; declare it under models: "
                        f"or use one of {models}"
                    )
            for k, cond in enumerate([*spec.when.all, *spec.when.any]):
                if cond.signal == "domain" and cond.in_:
                    unknown = [d for d in cond.in_ if d not in self.signals.domains]
                    if unknown:
                        problems.append(
                            f"{where}.when condition {k}: unknown domain(s) {unknown}; "
                            f"known: {sorted(self.signals.domains)}"
                        )
        names = [d.name for d in decisions]
        if len(set(names)) != len(names):
            problems.append("router: decision names must be unique (the default's too)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def model(self, name: str) -> ModelCard:
        for card in self.models:
            if card.name == name:
                return card
        raise KeyError(name)

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)


class PolicyError(ValueError):
    """A policy file that cannot be used; ``problems`` are ``path: message`` lines."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid policy\n" + "\n".join(f"  {p}" for p in problems))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_policy(data: Any, path: Path) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            loc = _format_loc(err["loc"])
            if err["type"] == "missing":
                msg = "required field is missing; add it"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field; remove it or check its spelling"
            problems.extend(
                line if loc == "(top level)" else f"{loc}: {line}" for line in msg.splitlines()
            )
        raise PolicyError(path, problems) from None


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PolicyError(
            path, [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]
        ) from None
    if not isinstance(data, dict):
        raise PolicyError(path, ["the file must be a YAML mapping with models, pools, ... keys"])
    return parse_policy(data, path)
