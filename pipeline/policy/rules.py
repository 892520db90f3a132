"""Decision rules: conditions on signals, nested all/any/not, and their evaluation.

A decision's ``when`` is a :class:`Rule`; :meth:`Rule.holds` evaluates it over the values
``pipeline.router.decisions`` gathers for a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from pipeline.policy.strict import Strict

#: Signals a decision rule may test, with the Python type of their values. Besides these,
#: ``keyword.<name>`` and ``embedding.<name>`` (bool) test the policy's own keyword and
#: embedding-similarity rules.
RULE_SIGNALS: dict[str, type] = {
    "domain": str,
    "domain_score": float,
    "complexity": str,
    "language": str,
    "context_class": str,
    "prompt_tokens": int,
    "expected_output_tokens": int,
    "load_shape": str,
    "messages": int,
    "turns": int,
    "tools_present": bool,
    "tool_loop": bool,
    "images_present": bool,
    "audio_present": bool,
    "session": str,
    "jailbreak_score": float,
    "injection_score": float,
    "harmful_score": float,
    "session_risk": float,
    "pii_found": bool,
    "moderation_flagged": bool,
    "safety_action": str,
    "tenant": str,
}
RULE_FAMILIES = ("keyword", "embedding")


def known_signal(name: str) -> bool:
    family, _, rest = name.partition(".")
    return name in RULE_SIGNALS or (family in RULE_FAMILIES and bool(rest))


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
        if not known_signal(self.signal):
            raise ValueError(
                f"unknown signal {self.signal!r}; use one of: {', '.join(RULE_SIGNALS)}, "
                "keyword.<rule>, embedding.<rule>"
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


def fits(value: Any, kind: type) -> bool:
    """Whether a rule's literal can be compared with a signal of type ``kind``."""
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def _value(values: dict[str, Any], signal: str) -> Any:
    """A signal's value; a keyword/embedding rule that did not fire is False."""
    if signal in values:
        return values[signal]
    return False if signal.partition(".")[0] in RULE_FAMILIES else None


def _node_kind(value: Any) -> str:
    if isinstance(value, Condition) or (isinstance(value, dict) and "signal" in value):
        return "condition"
    return "rule"


#: A node of a rule tree: a condition on one signal, or a nested all/any/not rule.
Node = Annotated[
    Annotated["Condition", Tag("condition")] | Annotated["Rule", Tag("rule")],
    Discriminator(_node_kind),
]


class Rule(Strict):
    """Holds when every ``all`` node holds, at least one ``any`` node does (if any are given)
    and the ``not`` node does not. Nodes are conditions or nested rules. An empty rule holds."""

    all: list[Node] = []
    any: list[Node] = []
    not_: Node | None = Field(None, alias="not")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def holds(self, values: dict[str, Any]) -> bool:
        if not all(_holds(node, values) for node in self.all):
            return False
        if self.any and not any(_holds(node, values) for node in self.any):
            return False
        return self.not_ is None or not _holds(self.not_, values)

    def conditions(self, where: str = "when") -> Iterator[tuple[str, Condition]]:
        """Every condition of the tree with its path inside the decision."""
        for field, nodes in (("all", self.all), ("any", self.any)):
            for i, node in enumerate(nodes):
                yield from _conditions(node, f"{where}.{field}[{i}]")
        if self.not_ is not None:
            yield from _conditions(self.not_, f"{where}.not")


def _holds(node: Condition | Rule, values: dict[str, Any]) -> bool:
    if isinstance(node, Condition):
        return node.holds(_value(values, node.signal))
    return node.holds(values)


def _conditions(node: Condition | Rule, where: str) -> Iterator[tuple[str, Condition]]:
    if isinstance(node, Condition):
        yield where, node
    else:
        yield from node.conditions(where)


Rule.model_rebuild()
