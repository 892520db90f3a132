"""The learner's join of outcomes and feedback: which arm to credit for a judgement.

Outcomes and feedback are both keyed by request id (co-partitioned). An outcome remembers, in
``served``, which arm served its request, for which tenant, whether from the cache, and the
offset of the outcome record; feedback is credited to that arm once per (request, source), only
when it comes from the request's own tenant (:mod:`pipeline.learn.judgements`); ``judged``
remembers the sources credited. Feedback that arrives before its outcome waits in ``pending``.
The tables are mappings (the learner's are changelog-backed faust tables); this module only
reads and writes them, so it runs the same on plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import asdict
from typing import Any

from pipeline.envelope import Credit, Feedback, Outcome
from pipeline.learn.evidence import Served, credit_feedback, credit_outcome, served_by
from pipeline.learn.judgements import IgnoreReason, ignore_reason, wait_for_outcome
from pipeline.policy import LearningConfig

#: What a judgement comes to: a credit for the serving arm, or why it was ignored.
Verdict = Credit | IgnoreReason


def served_entry(outcome: Outcome, offset: int) -> dict[str, Any]:
    """What ``served`` keeps of an outcome read at ``offset``."""
    return {
        **asdict(served_by(outcome)),
        "cache_hit": outcome.cache_hit,
        "tenant": outcome.tenant,
        "offset": offset,
    }


def served_from(entry: dict[str, Any]) -> Served:
    """The arm a ``served`` entry names."""
    fields = {k: v for k, v in entry.items() if k not in ("cache_hit", "tenant", "offset")}
    return Served(**{**fields, "context": tuple(fields.get("context", ()))})


class OutcomeFeedbackJoin:
    """Joins outcomes and feedback over three tables keyed by request id."""

    def __init__(
        self,
        served: MutableMapping[str, Any],
        pending: MutableMapping[str, Any],
        judged: MutableMapping[str, Any],
        learning: LearningConfig,
    ) -> None:
        self.served, self.pending, self.judged = served, pending, judged
        self.learning = learning

    def first_reading(self, outcome: Outcome, offset: int) -> bool:
        """Whether the outcome at ``offset`` is its request's first (or that same record read
        again after a crash): a second outcome of one request, which dispatch redelivered, is
        not counted again."""
        before = self.served.get(outcome.request_id)
        return before is None or before.get("offset", offset) == offset

    def outcome(self, outcome: Outcome, offset: int) -> Iterator[Verdict]:
        """Remember who served ``outcome``'s request (at once); then, as they are asked for, the
        outcome's own credits and the verdicts on the feedback that waited for it. Each waiting
        judgement is made only when asked for and ``pending`` is forgotten after the last, so a
        caller that sends each credit before asking for the next loses none in a crash."""
        entry = served_entry(outcome, offset)
        self.served[outcome.request_id] = entry
        return self._verdicts(outcome, entry)

    def _verdicts(self, outcome: Outcome, entry: dict[str, Any]) -> Iterator[Verdict]:
        yield from credit_outcome(outcome, self.learning)
        waiting = self.pending.get(outcome.request_id)
        if waiting:
            for item in waiting:
                yield self._judge(Feedback.model_validate_json(item["feedback"]), entry)
            del self.pending[outcome.request_id]

    def feedback(self, feedback: Feedback, now: float) -> Verdict | None:
        """The verdict on ``feedback``; None while its request's outcome has not come (it waits
        in ``pending``, a later one of the same source replacing it)."""
        entry = self.served.get(feedback.request_id)
        if entry is None:
            waiting = self.pending.get(feedback.request_id) or []
            self.pending[feedback.request_id] = wait_for_outcome(waiting, feedback, now)
            return None
        return self._judge(feedback, entry)

    def _judge(self, feedback: Feedback, entry: dict[str, Any]) -> Verdict:
        """Credit ``feedback`` to the arm that served its request, unless it must be ignored."""
        sources = self.judged.get(feedback.request_id) or []
        reason = ignore_reason(feedback, entry["tenant"], entry["cache_hit"], sources)
        if reason is not None:
            return reason
        self.judged[feedback.request_id] = [*sources, feedback.source]
        return credit_feedback(feedback, served_from(entry), self.learning.implicit.weight)
