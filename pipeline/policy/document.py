"""The policy file as a whole: the top-level model, references across sections, loading.

Load a file with :func:`load_policy`; any problem raises :class:`PolicyError` whose lines name
the file, the path inside it, what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from pipeline.policy.budgets import Budget
from pipeline.policy.models import ModelCard
from pipeline.policy.pools import Pool
from pipeline.policy.router import RouterConfig
from pipeline.policy.rules import RULE_SIGNALS, Condition, fits
from pipeline.policy.safety import SafetyConfig
from pipeline.policy.signals import SignalsConfig
from pipeline.policy.strict import Strict
from pipeline.policy.tools import ToolSelectionConfig
from pipeline.vocabulary import COMPLEXITY, DOMAINS, LOAD_SHAPES


class Policy(Strict):
    version: Literal[1] = 1
    models: list[ModelCard] = Field(min_length=1)
    pools: list[Pool] = Field(min_length=1)
    signals: SignalsConfig
    safety: SafetyConfig
    router: RouterConfig
    budgets: list[Budget] = Field([], description="spend, token and request limits")
    tools: ToolSelectionConfig = ToolSelectionConfig()

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
        safe = self.safety.safe_model
        if safe is not None and safe not in models:
            problems.append(f"safety.safe_model: unknown model {safe!r}; use one of {models}")
        if safe is None and "route_safe" in self.safety.actions():
            problems.append(
                "safety: an action is route_safe but safety.safe_model is not set; name the model"
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
            for path, cond in spec.when.conditions():
                problem = self._condition_problem(cond)
                if problem:
                    problems.append(f"{where}.{path}: {problem}")
        names = [d.name for d in decisions]
        if len(set(names)) != len(names):
            problems.append("router: decision names must be unique (the default's too)")
        budgets = [b.name for b in self.budgets]
        dupes = sorted({n for n in budgets if budgets.count(n) > 1})
        if dupes:
            problems.append(f"budgets: duplicate name(s) {dupes}; names must be unique")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _condition_problem(self, cond: Condition) -> str | None:
        """What is wrong with a condition's signal or values, given the rest of the policy."""
        family, _, rule = cond.signal.partition(".")
        declared = {
            "keyword": [r.name for r in self.signals.keywords],
            "embedding": [r.name for r in self.signals.embeddings],
        }
        if family in declared and rule not in declared[family]:
            return (
                f"{cond.signal}: no {family} rule named {rule!r} under signals.{family}s "
                f"(declared: {declared[family]})"
            )
        vocabulary = {
            "domain": DOMAINS,
            "complexity": COMPLEXITY,
            "load_shape": LOAD_SHAPES,
            "session": ("warm", "cold"),
            "context_class": tuple(c.name for c in self.signals.context_classes),
        }.get(cond.signal)
        kind = bool if family in declared else RULE_SIGNALS[cond.signal]
        if kind is str and (cond.gte is not None or cond.lte is not None):
            return f"{cond.signal} is text: compare it with equals, not_equals or in, not gte/lte"
        values = cond.in_ or ([] if cond.equals is None else [cond.equals])
        if cond.not_equals is not None:
            values = [*values, cond.not_equals]
        mistyped = [v for v in values if not fits(v, kind)]
        if mistyped:
            return f"{cond.signal} takes {kind.__name__} values; got {mistyped}"
        unknown = [v for v in values if vocabulary is not None and v not in vocabulary]
        if unknown:
            return f"unknown {cond.signal} value(s) {unknown}; known: {list(vocabulary or ())}"
        return None

    def model(self, name: str) -> ModelCard:
        for card in self.models:
            if card.name == name:
                return card
        raise KeyError(name)

    def strongest(self, candidates: list[str], domain: str | None) -> ModelCard | None:
        """The candidate with the highest quality prior for ``domain`` (the dearer one on a
        tie): what a router that always plays safe would send the request to."""
        cards = [card for card in self.models if card.name in candidates]
        if not cards:
            return None
        return max(cards, key=lambda c: (c.prior_quality(domain), c.price.cost(1000, 1000)))

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
        if part in ("condition", "rule"):  # the tags of a rule-tree node, not in the file
            continue
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
