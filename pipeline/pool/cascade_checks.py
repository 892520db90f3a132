"""Cascade checks: whether an answer is good enough to stop the dispatch ladder.

Checks (``decision.cascade.checks``): ``empty`` (no text), ``refusal`` (the answer opens with a
refusal), ``logprob`` (mean token logprob below ``min_mean_logprob``, when the pool returns
logprobs) and ``arithmetic`` (a cheap verifier: every ``a op b = c`` in the answer must hold).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.policy import CascadeConfig

REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,? (but )?i|i can(no|')t|i cannot|i won'?t|i am unable|"
    r"i'?m unable|i'?m not able|as an ai\b)",
    re.IGNORECASE,
)
NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
OPERATOR = r"[-+*/x\u00d7\u00f7]"
#: ``a op b op c ... = d``: a whole chain of operations before the equals sign.
EQUATION = re.compile(rf"({NUMBER}(?:\s*{OPERATOR}\s*{NUMBER})+)\s*=\s*\$?({NUMBER})")
TERM = re.compile(rf"({OPERATOR})?\s*({NUMBER})")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def evaluate(chain: str) -> float | None:
    """The value of ``a op b op c ...`` with the usual precedence; None on division by zero."""
    terms = [(op or "+", _number(n)) for op, n in TERM.findall(chain)]
    sums: list[float] = []
    for op, value in terms:
        if op in "x*\u00d7":
            sums[-1] *= value
        elif op in "/\u00f7":
            if value == 0:
                return None
            sums[-1] /= value
        else:
            sums.append(value if op == "+" else -value)
    return sum(sums)


def arithmetic_holds(text: str) -> bool:
    """Whether every ``a op b ... = c`` in ``text`` is right (to 1% or 0.01)."""
    for chain, result in EQUATION.findall(text):
        value, expected = evaluate(chain), _number(result)
        if value is None or abs(value - expected) > max(0.01, 0.01 * abs(expected)):
            return False
    return True


def failed_check(response: dict[str, Any], config: CascadeConfig) -> str | None:
    """The first check an OpenAI chat-completion response fails, or None if it passes."""
    choice = (response.get("choices") or [{}])[0]
    text = str((choice.get("message") or {}).get("content") or "")
    if "empty" in config.checks and not text.strip():
        return "empty"
    if "refusal" in config.checks and REFUSAL.match(text):
        return "refusal"
    if "logprob" in config.checks:
        tokens = ((choice.get("logprobs") or {}).get("content")) or []
        values = [t["logprob"] for t in tokens if isinstance(t, dict) and "logprob" in t]
        if values and sum(values) / len(values) < config.min_mean_logprob:
            return "logprob"
    if "arithmetic" in config.checks and not arithmetic_holds(text):
        return "arithmetic"
    return None
