"""`wrp policy check`: validation problems and routing mistakes of a policy file, with lines.

:func:`check_file` runs :func:`pipeline.policy.load_policy` and maps each problem's dotted
path (``router.decisions[2].models[0]``) to its line in the YAML file (:func:`locate`). On a
valid policy it then looks for routing mistakes:

* error: a candidate whose ``context_length`` cannot hold any prompt of the context classes
  its decision is limited to; warning: one that cannot hold the longest of them;
* warning: a decision that can never match because an earlier one matches all it would;
* warning: two decisions at the same priority that may match the same request;
* warning: a decision that lists a model twice;
* warning: a cost weight below 0;

and runs the ``checks`` it is given: the domains' checks of what the policy names outside the
file (the secrets a pool's ``auth`` names, the success predictor a decision reads), which
:mod:`pipeline.preflight` passes.

The rule analysis is sound but incomplete: it reasons over conjunctions of simple conditions
(the ``all`` conditions, one ``any`` alternative at a time and a negated equals/not_equals
``not``) and reports shadowing or overlap only when it can show it; it does not prove either
in general, so a clean check does not mean no decision is shadowed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.policy.document import Policy, PolicyError, load_policy
from pipeline.policy.router import DecisionSpec
from pipeline.policy.rules import Condition, Rule

Severity = Literal["error", "warning"]

#: The pydantic message of a missing field, as :func:`pipeline.policy.parse_policy` words it.
MISSING = "required field is missing; add it"


@dataclass(frozen=True)
class Finding:
    """One problem of a policy file; ``line`` is 1-based (None when the file has no lines)."""

    severity: Severity
    line: int | None
    message: str

    def format(self, path: Path | str) -> str:
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        return f"{where}: {self.severity}: {self.message}"


#: A check of a valid policy whose YAML node tree is given, added by the domain it concerns.
PolicyCheck = Callable[[Policy, yaml.Node], Iterable[Finding]]


# --- locating a dotted path in the YAML node tree -------------------------------------------

_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def split_path(path: str) -> list[str | int]:
    """``router.decisions[2].models`` -> ``['router', 'decisions', 2, 'models']``."""
    return [int(index) if index else key for index, key in _SEGMENT.findall(path)]


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, int] | None:
    """The child of ``node`` at ``step`` and the line that names it (the key's, for mappings)."""
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        found = None
        for key, value in node.value:  # the last of duplicate keys wins, as in safe_load
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                found = (value, key.start_mark.line + 1)
        return found
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        item = node.value[step]
        return item, item.start_mark.line + 1
    return None


def locate(root: yaml.Node, path: str | list[str | int]) -> int:
    """The line of the node at ``path``, or of its deepest existing ancestor.

    A step that is not in the file but whose next step is (a pydantic union tag such as
    ``condition`` in ``when.all[0].condition.equals``) is skipped; a key holding dots is
    matched whole when its parts are not found one by one.
    """
    steps = split_path(path) if isinstance(path, str) else list(path)
    node, line = root, root.start_mark.line + 1
    i = 0
    while i < len(steps):
        found = _child(node, steps[i])
        if found is None and i + 1 < len(steps):
            if _child(node, steps[i + 1]) is not None:  # a tag the file does not spell
                i += 1
                continue
            for j in range(i + 2, len(steps) + 1):  # a key with dots in it
                parts = steps[i:j]
                if all(isinstance(p, str) for p in parts):
                    found = _child(node, ".".join(map(str, parts)))
                    if found is not None:
                        i = j - 1
                        break
        if found is None:
            break
        node, line = found
        i += 1
    return line


def _locate_problem(root: yaml.Node, problem: str) -> Finding:
    """A :class:`PolicyError` problem line as an error at the line its path names."""
    head, sep, message = problem.partition(": ")
    first = split_path(head)[:1] if sep else []
    if not first or not (first[0] in Policy.model_fields or _child(root, first[0]) is not None):
        return Finding("error", root.start_mark.line + 1, problem)
    if head == "router.default" and message == MISSING:
        return Finding(
            "error",
            locate(root, head),
            "no default decision: add router.default, the decision used when none matches",
        )
    return Finding("error", locate(root, head), f"{head}: {message}")


# --- reasoning over rules ---------------------------------------------------------------------


def _holds(cond: Condition, value: Any) -> bool | None:
    """``cond.holds(value)``, or None when the value cannot be compared."""
    try:
        return cond.holds(value)
    except TypeError:
        return None


def _values(cond: Condition) -> list[Any] | None:
    """The values a signal can have when ``cond`` holds, if it names them (equals, in)."""
    if cond.in_ is not None:
        return list(cond.in_)
    if cond.equals is not None:
        return [cond.equals]
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def implies(fact: Condition, cond: Condition) -> bool:
    """Whether every value satisfying ``fact`` satisfies ``cond`` (same signal; may miss some)."""
    if fact.signal != cond.signal:
        return False
    values = _values(fact)
    if values is not None:
        return all(_holds(cond, v) is True for v in values)
    if fact.not_equals is not None:
        return cond.not_equals is not None and cond.not_equals == fact.not_equals
    if fact.gte is not None:
        if cond.gte is not None:
            return cond.gte <= fact.gte
        return _number(cond.not_equals) and cond.not_equals < fact.gte
    if fact.lte is not None:
        if cond.lte is not None:
            return cond.lte >= fact.lte
        return _number(cond.not_equals) and cond.not_equals > fact.lte
    return False


def contradicts(a: Condition, b: Condition) -> bool:
    """Whether no value satisfies both ``a`` and ``b`` (same signal; may miss some)."""
    if a.signal != b.signal:
        return False
    for named, other in ((a, b), (b, a)):
        values = _values(named)
        if values is not None:
            return all(_holds(other, v) is False for v in values)
    if a.gte is not None and b.lte is not None:
        return b.lte < a.gte
    if a.lte is not None and b.gte is not None:
        return b.gte > a.lte
    return False


def _negation(node: Condition | Rule | None) -> list[Condition]:
    """A condition equivalent to ``not node`` when there is a simple one."""
    if isinstance(node, Condition):
        if node.equals is not None:
            return [Condition(signal=node.signal, not_equals=node.equals)]
        if node.not_equals is not None:
            return [Condition(signal=node.signal, equals=node.not_equals)]
    return []


def _definite(node: Condition | Rule) -> list[Condition]:
    """Conditions that hold whenever ``node`` does: its ``all`` conditions, nested ones too."""
    if isinstance(node, Condition):
        return [node]
    found = [c for child in node.all for c in _definite(child)]
    return found + _negation(node.not_)


def cases(rule: Rule) -> list[list[Condition]]:
    """Conjunctions of conditions, one of which holds whenever ``rule`` does (one per ``any``)."""
    base = _definite(rule)
    return [base + _definite(alt) for alt in rule.any] if rule.any else [base]


def entails(facts: list[Condition], node: Condition | Rule) -> bool:
    """Whether ``node`` holds whenever every one of ``facts`` does (may miss some)."""
    if isinstance(node, Condition):
        return any(implies(f, node) for f in facts)
    return (
        all(entails(facts, child) for child in node.all)
        and (not node.any or any(entails(facts, child) for child in node.any))
        and (node.not_ is None or refutes(facts, node.not_))
    )


def refutes(facts: list[Condition], node: Condition | Rule) -> bool:
    """Whether ``node`` fails whenever every one of ``facts`` holds (may miss some)."""
    if isinstance(node, Condition):
        return any(contradicts(f, node) for f in facts)
    return (
        any(refutes(facts, child) for child in node.all)
        or (bool(node.any) and all(refutes(facts, child) for child in node.any))
        or (node.not_ is not None and entails(facts, node.not_))
    )


def covers(first: Rule, later: Rule) -> bool:
    """Whether ``first`` holds whenever ``later`` does (so ``later`` never gets a request)."""
    return all(entails(case, first) for case in cases(later))


def disjoint(a: Rule, b: Rule) -> bool:
    """Whether no request can satisfy both rules (shown by a contradiction; may miss some)."""
    return all(refutes(case, b) for case in cases(a)) or all(refutes(case, a) for case in cases(b))


# --- the checks -------------------------------------------------------------------------------


def decision_paths(policy: Policy) -> dict[int, str]:
    """``id(decision)`` -> its dotted path in the file."""
    paths = {id(d): f"router.decisions[{i}]" for i, d in enumerate(policy.router.decisions)}
    paths[id(policy.router.default)] = "router.default"
    return paths


def _context_findings(
    policy: Policy, spec: DecisionSpec, path: str, root: yaml.Node
) -> Iterator[Finding]:
    """Candidates too small for the context classes the decision's rule limits it to.

    Classes are ordered by ``max_tokens``; a request of class C has more prompt tokens than
    the class before it (0 for the first) and at most C's ``max_tokens``. Of the classes the
    rule allows, the smallest one C decides: a candidate whose ``context_length`` is at most the
    previous class's ``max_tokens`` fits no such request (error); one below C's ``max_tokens``
    misses the longest (warning). Only ``context_class`` conditions count, and the answer's
    tokens are not: the router needs room for them too.
    """
    classes = policy.signals.context_classes
    names = [c.name for c in classes]
    probe = [Condition(signal="context_class", equals=n) for n in names]
    allowed: set[str] = set()
    for case in cases(spec.when):
        allowed |= {p.equals for p in probe if not any(contradicts(f, p) for f in case)}
    if not allowed or len(allowed) == len(names):
        return
    index = min(names.index(n) for n in allowed)
    cls, floor = classes[index], classes[index - 1].max_tokens if index else 0
    which = ", ".join(n for n in names if n in allowed)
    for j, name in enumerate(spec.models):
        card = policy.model(name)
        line = locate(root, f"{path}.models[{j}]")
        if card.context_length <= floor:
            yield Finding(
                "error",
                line,
                f"decision {spec.name!r} only takes context_class {which} (prompts above "
                f"{floor} tokens) but candidate {name!r} has context_length "
                f"{card.context_length}: it fits none of them",
            )
        elif card.context_length < cls.max_tokens:
            yield Finding(
                "warning",
                line,
                f"decision {spec.name!r} only takes context_class {which} (prompts up to "
                f"{cls.max_tokens} tokens in {cls.name}) but candidate {name!r} has "
                f"context_length {card.context_length}: the longest prompts will not fit",
            )


def _duplicate_findings(spec: DecisionSpec, path: str, root: yaml.Node) -> Iterator[Finding]:
    for j, name in enumerate(spec.models):
        first = spec.models.index(name)
        if first < j:
            yield Finding(
                "warning",
                locate(root, f"{path}.models[{j}]"),
                f"decision {spec.name!r} lists model {name!r} twice (first at line "
                f"{locate(root, f'{path}.models[{first}]')}); remove one",
            )


def _negative_weight_findings(
    policy: Policy, paths: dict[int, str], root: yaml.Node
) -> Iterator[Finding]:
    """A cost weight below 0 pays more for less: meant for tracing curves, rarely in service."""
    router = policy.router
    places = [("router.cost_weight", router.cost_weight)]
    places += [
        (f"{paths[id(spec)]}.cost_weight", spec.cost_weight)
        for spec in [*router.decisions, router.default]
    ]
    places += [
        (f"router.tenants.{name}.cost_weight", t.cost_weight) for name, t in router.tenants.items()
    ]
    for path, weight in places:
        if weight is not None and weight < 0:
            yield Finding(
                "warning",
                locate(root, path),
                f"{path} is {weight:g}: below 0 the router prefers dearer models even where "
                "they are estimated worse; use 0 for quality only",
            )


def analyse(policy: Policy, root: yaml.Node, *, checks: Sequence[PolicyCheck]) -> list[Finding]:
    """Routing mistakes of a valid policy whose YAML node tree is ``root``, and the findings
    of ``checks``."""
    paths = decision_paths(policy)
    line = {key: locate(root, path) for key, path in paths.items()}
    findings: list[Finding] = [finding for check in checks for finding in check(policy, root)]
    findings += _negative_weight_findings(policy, paths, root)
    for spec in policy.router.decisions:  # the default's rule is never tested
        findings += _context_findings(policy, spec, paths[id(spec)], root)
    for spec in [*policy.router.decisions, policy.router.default]:
        findings += _duplicate_findings(spec, paths[id(spec)], root)
    ordered = policy.router.ordered()
    default = policy.router.default
    for k, later in enumerate(ordered):
        # the default's own rule is never tested: it is shadowed by a rule that always holds
        later_rule = Rule() if later is default else later.when
        first = next((a for a in ordered[:k] if covers(a.when, later_rule)), None)
        if first is not None:
            what = "the default" if later is default else "decision"
            findings.append(
                Finding(
                    "warning",
                    line[id(later)],
                    f"{what} {later.name!r} can never match: {first.name!r} (priority "
                    f"{first.priority}, line {line[id(first)]}) is tried first and matches "
                    f"every request {later.name!r} would",
                )
            )
        if later is default:
            continue
        for a in ordered[:k]:
            if a.priority != later.priority or a is first or disjoint(a.when, later.when):
                continue
            findings.append(
                Finding(
                    "warning",
                    line[id(later)],
                    f"decisions {a.name!r} (line {line[id(a)]}) and {later.name!r} have the "
                    f"same priority {a.priority} and can match the same request; "
                    f"{a.name!r} wins by file order. Set different priorities or make their "
                    "conditions exclusive",
                )
            )
    return findings


def _sorted(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, each by line."""
    return sorted(findings, key=lambda f: (f.severity != "error", f.line or 0))


def _compose(path: Path) -> yaml.Node | Finding:
    """The YAML node tree of the file, or the error that stops reading it."""
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except OSError as exc:
        return Finding("error", None, f"cannot read the file: {exc.strerror}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        return Finding("error", line, f"not valid YAML ({getattr(exc, 'problem', exc)})")
    return root if root is not None else Finding("error", 1, "the file is empty")


def check_file(path: Path | str, *, checks: Sequence[PolicyCheck]) -> list[Finding]:
    """Every problem of the policy file at ``path`` (with ``checks`` run on a valid one), errors
    first, each with its line. ``wrp policy check`` runs it with the domains' checks
    (:func:`pipeline.preflight.check_policy`)."""
    path = Path(path)
    root = _compose(path)
    if isinstance(root, Finding):
        return [root]
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return _sorted([_locate_problem(root, p) for p in exc.problems])
    return _sorted(analyse(policy, root, checks=checks))
