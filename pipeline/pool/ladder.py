"""The dispatch ladder: which models a request's answer is asked of, in order.

The rungs are the decision's model, then its cascade ladder. A rung's call that fails without
answering (nothing relayed to the client, not a passed deadline) is made once more on the
decision's fallback model, while no answer has escalated yet. A rung's answer stands when it is
the last rung's, when it failed, when part of it already reached the client (a streamed answer is
the answer whatever a check says) or when it passes every cascade check (:func:`failed_check`);
otherwise the climb escalates to the next rung.

Pure: the caller says how a model is called (dispatch calls a pool; the routing evaluation
replays recorded answers), so both climb the same ladder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pipeline.envelope import Decision
from pipeline.policy import CascadeConfig, Policy
from pipeline.pool.cascade_checks import failed_check


class Answer(Protocol):
    """What the ladder reads of a call."""

    @property
    def response(self) -> dict[str, Any] | None: ...
    @property
    def relayed(self) -> bool: ...
    @property
    def error_type(self) -> str | None: ...


CallT = TypeVar("CallT", bound=Answer)


@dataclass
class Climb(Generic[CallT]):
    """How a climb went: every call in the order made, and why the ladder moved on."""

    calls: list[tuple[str, CallT]] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    fallback_from: str | None = None

    @property
    def model(self) -> str:
        """The model whose call stands."""
        return self.calls[-1][0]

    @property
    def answer(self) -> CallT:
        """The call that stands."""
        return self.calls[-1][1]


@dataclass(frozen=True)
class Ladder:
    rungs: tuple[str, ...]
    fallback: str | None
    cascade: CascadeConfig

    @classmethod
    def of(cls, decision: Decision, policy: Policy) -> Ladder:
        """``decision``'s ladder under ``policy`` (a fallback the policy lacks is none)."""
        known = {card.name for card in policy.models}
        spec = policy.router.find(decision.decision)
        return cls(
            (decision.model, *decision.ladder),
            decision.fallback if decision.fallback in known else None,
            spec.cascade if spec is not None else CascadeConfig(),
        )

    def unknown(self, policy: Policy) -> list[str]:
        """Rungs ``policy`` has no model card for (it changed after routing)."""
        known = {card.name for card in policy.models}
        return [name for name in self.rungs if name not in known]

    def falls_back(self, answer: Answer, climb: Climb[Any]) -> bool:
        return (
            self.fallback is not None
            and answer.response is None
            and not answer.relayed
            and answer.error_type != "deadline_exceeded"
            and not climb.escalated
        )

    def stands(self, answer: Answer, rung: int) -> bool:
        if answer.response is None or rung == len(self.rungs) - 1 or answer.relayed:
            return True
        return failed_check(answer.response, self.cascade) is None

    async def climb(self, call: Callable[[str], Awaitable[CallT]]) -> Climb[CallT]:
        """Ask ``call`` for answers, rung after rung, until one stands."""
        climb: Climb[CallT] = Climb()
        for rung, name in enumerate(self.rungs):
            model, answer = name, await call(name)
            if self.falls_back(answer, climb):
                assert self.fallback is not None
                climb.calls.append((model, answer))
                climb.fallback_from, model = name, self.fallback
                answer = await call(model)
            climb.calls.append((model, answer))
            if self.stands(answer, rung):
                break
            climb.escalated.append(model)
        return climb
