"""Screening an answer before the client sees it.

Three findings, each acted on by the tenant's ``safety.answers`` policy:

- **PII** in the answer, by the request side's detectors (:mod:`pipeline.safety.pii`): per
  entity allow, redact (the value becomes ``<ENTITY>``, as on the request side) or block.
- **Moderation** categories over their threshold, by the moderation head over the answer's
  embedding (opt-in: an encoder pass per answer, see :class:`AnswerModeration`): flag or block.
- **An attack that succeeded**: the request's jailbreak, injection or harmful detector scored it
  at or over the policy's ``attack_score`` (default: the detector's watch level, the suspicious
  band below its blocking threshold, since blocked requests never reach a pool) and the answer
  is not a refusal (:data:`ANSWER_REFUSAL`): flag or block.

A block ends the answer with ``finish_reason: content_filter``, as OpenAI's content filter does.

A whole answer is screened at once (:func:`screen_response`). A streamed one is screened in
windows of ``window_chars`` characters (:class:`StreamScreen`): a window is released only once the
next one has been screened together with it, so a value crossing a window boundary is caught
whole, and at most one window is held back (a character reaches the client one to two windows of
generated text late). The detectors read only the held window and the new one (plus a short
redacted tail of what was released, for labels such as "phone:").
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.envelope import AnswerScreen, AnswerVerdict, Safety
from pipeline.models.encoder import Encoder
from pipeline.models.heads import Head
from pipeline.policy import AnswerScreening
from pipeline.safety.pii import PiiSpan, find_pii, redact
from pipeline.safety.pii.labels import LABEL_WINDOW, SECRET_LABEL_WINDOW
from pipeline.safety.scrub import SHORTEST

#: An answer that refuses an attack: it opens with a refusal (after an optional "Name:" persona
#: label and "No,"), straight or curly apostrophes, or says "I can't help/assist/..." in its first
#: line.
#: Phrasings added from the train half of PyRIT's human-scored refusal and objective sets
#: (``wrp eval answers`` reports the other half). Wider than the cascade's check, which must not
#: escalate an ordinary answer that says "I can't do it in SQL" somewhere in its first line.
ANSWER_REFUSAL = re.compile(
    r"^\W*(?:[\w-]{1,24}:\s*)?(?:no[,.]?\s+)?"
    r"(i['\u2019]?m (?:really |so |very )?sorry|i am (?:really |so |very )?sorry|"
    r"sorry,? (?:but )?(?:i|even)\b|i can(?:no|['\u2019])t|i can not|i cannot|"
    r"i won['\u2019]?t|i will not|i am unable|i['\u2019]?m unable|"
    r"i['\u2019]?m not (?:able|going|willing)|i am not (?:able|going|willing)|"
    r"i must (?:decline|refuse)|i (?:have to|must) respectfully decline|as an ai\b|"
    r"[^\n]{0,160}?\bi (?:can(?:no|['\u2019])?t|can not|won['\u2019]?t|will not|"
    r"don['\u2019]t think i can) (?:help|assist|provide|do|write|create|give|share|support)\b)",
    re.IGNORECASE,
)
#: Categories over threshold for one text.
Moderate = Callable[[str], list[str]]
#: Characters of released (redacted) text the detectors also read, for labels before a value.
CONTEXT_CHARS = max(LABEL_WINDOW, SECRET_LABEL_WINDOW)
CONTENT_FILTER = "content_filter"
SEVERITY: dict[AnswerVerdict, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}


def attack_scored(safety: Safety | None, attack_score: float | None) -> str | None:
    """Why the request counts as an attack (a detector at or over ``attack_score``, else its
    watch level), or None. A request the learned detectors did not read never counts."""
    for hit in sorted(safety.hits if safety else [], key=lambda h: -h.score):
        level = attack_score if attack_score is not None else hit.watch
        if level is not None and hit.score >= level:
            return f"{hit.detector} {hit.score:.2f} >= {level:.2f}"
    return None


def is_refusal(text: str) -> bool:
    """Whether an answer opens with a refusal."""
    return ANSWER_REFUSAL.match(text) is not None


class AnswerModeration:
    """The moderation head over an answer's embedding (one encoder pass per text read)."""

    def __init__(self, encoder: Encoder, head: Head) -> None:
        self.encoder = encoder
        self.head = head

    def categories(self, text: str, thresholds: dict[str, float]) -> list[str]:
        """The categories over their threshold (``thresholds`` over the head's own)."""
        probabilities = np.asarray(self.head.predict(self.encoder.encode([text]))[0]).tolist()
        levels = {**self.head.meta["thresholds"], **thresholds}
        return sorted(
            label
            for label, p in zip(self.head.labels, probabilities, strict=True)
            if p >= levels[label]
        )


@dataclass
class Findings:
    """What screening found so far, and the actions it called for."""

    config: AnswerScreening
    attack: str | None  # why the request counts as an attack, None when it does not
    moderate: Moderate | None
    actions: list[AnswerVerdict] = field(default_factory=lambda: ["allow"])
    triggers: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    pii: set[str] = field(default_factory=set)
    categories: set[str] = field(default_factory=set)
    redacted: int = 0
    windows: int = 0
    held_chars: int = 0
    attack_complied: bool = False

    def act(self, action: AnswerVerdict, trigger: str, reason: str) -> None:
        """Record what fired (once: a streamed value is read again in the next window)."""
        if trigger not in self.triggers:
            self.triggers.add(trigger)
            self.reasons.append(f"{reason} -> {action}")
            self.actions.append(action)

    @property
    def blocked(self) -> bool:
        return "block" in self.actions

    def read(self, text: str, opening: bool) -> list[PiiSpan]:
        """Screen ``text`` (``opening``: it starts the answer); the PII spans to redact."""
        self.windows += 1
        complies = opening and text.strip() and not is_refusal(text)
        if complies and self.attack and self.config.attack_complied != "off":
            self.attack_complied = True
            self.act(
                self.config.attack_complied,
                "attack_complied",
                f"answer complies with a request scored {self.attack}",
            )
        if self.config.moderation != "off" and self.moderate is not None:
            for category in self.moderate(text):
                self.categories.add(category)
                self.act(
                    self.config.moderation, f"moderation:{category}", f"moderation: {category}"
                )
        spans = find_pii(text) if len(text) >= SHORTEST else []
        to_redact = []
        for span in spans:
            action = self.config.pii.get(span.entity, "allow")
            if action == "allow":
                continue
            self.pii.add(span.entity)
            self.act(action, f"pii:{span.entity}", f"PII: {span.entity}")
            if action == "redact":
                to_redact.append(span)
        return to_redact

    def verdict(self, streamed: bool) -> AnswerScreen:
        return AnswerScreen(
            action=max(self.actions, key=SEVERITY.__getitem__),
            triggers=sorted(self.triggers),
            reasons=self.reasons,
            pii=sorted(self.pii),
            redacted=self.redacted,
            categories=sorted(self.categories),
            attack_complied=self.attack_complied,
            streamed=streamed,
            windows=self.windows,
            held_chars=self.held_chars,
        )


def _choices(response: dict[str, Any]) -> list[dict[str, Any]]:
    choices = response.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def filtered(response: dict[str, Any], texts: dict[int, str], blocked: bool) -> dict[str, Any]:
    """A copy of ``response`` whose choices say ``texts`` (by choice index), ending with
    ``content_filter`` when ``blocked``."""
    out = copy.deepcopy(response)
    for i, choice in enumerate(_choices(out)):
        index = choice.get("index", i)
        message = choice.get("message")
        if isinstance(message, dict) and index in texts:
            message["content"] = texts[index]
        if blocked:
            choice["finish_reason"] = CONTENT_FILTER
    return out


def screen_response(
    response: dict[str, Any],
    safety: Safety | None,
    config: AnswerScreening,
    moderate: Moderate | None = None,
) -> tuple[dict[str, Any], AnswerScreen]:
    """A whole chat completion, screened: the response the client gets, and the verdict."""
    findings = Findings(config, attack_scored(safety, config.attack_score), moderate)
    texts: dict[int, str] = {}
    for i, choice in enumerate(_choices(response)):
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            continue
        spans = findings.read(content, opening=True)
        findings.redacted += len(spans)
        texts[choice.get("index", i)] = redact(content, spans) if spans else content
    verdict = findings.verdict(streamed=False)
    if findings.blocked:
        return filtered(response, dict.fromkeys(texts, config.refusal), True), verdict
    if findings.redacted:
        return filtered(response, texts, False), verdict
    return response, verdict


@dataclass
class _Text:
    """One choice's streamed text: what is held back, and what was released."""

    pending: str = ""
    released: list[str] = field(default_factory=list)
    tail: str = ""  # the last released characters (redacted), read as context


class StreamScreen:
    """Screens one streamed answer: :meth:`feed` takes the pool's chunk events and returns the
    ones to relay now; :meth:`finish` returns the rest when the pool is done."""

    def __init__(
        self, config: AnswerScreening, safety: Safety | None, moderate: Moderate | None = None
    ) -> None:
        self.config = config
        self.window = config.window_chars
        self.findings = Findings(config, attack_scored(safety, config.attack_score), moderate)
        self.texts: dict[int, _Text] = {}
        self.queued: list[dict[str, Any]] = []  # chunks without text, behind held text
        self.head: dict[str, Any] = {}  # id, object, created, model of the stream
        self.ended = False

    def feed(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in chunks:
            if self.ended:
                break
            if not self.head:
                self.head = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
            rest = self._take_text(chunk)
            if rest is not None:
                if any(t.pending for t in self.texts.values()):
                    self.queued.append(rest)
                else:
                    out.append(rest)
            for index, text in self.texts.items():
                if len(text.pending) >= 2 * self.window and not self.ended:
                    out += self._step(index, final=False)
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Screen and release what is held, then the chunks queued behind it."""
        out: list[dict[str, Any]] = []
        for index in list(self.texts):
            if not self.ended:
                out += self._step(index, final=True)
        if not self.ended:
            out += self.queued
        self.queued = []
        self.ended = True
        return out

    def verdict(self) -> AnswerScreen:
        return self.findings.verdict(streamed=True)

    def screened_response(self, response: dict[str, Any]) -> dict[str, Any]:
        """The assembled ``response`` as the client saw it: the released text of each choice."""
        if not self.findings.blocked and not self.findings.redacted:
            return response
        texts = {i: "".join(t.released) for i, t in self.texts.items()}
        if self.findings.blocked and not any(texts.values()):
            texts = dict.fromkeys(texts or {0: ""}, self.config.refusal)
        return filtered(response, texts, self.findings.blocked)

    def _take_text(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """Hold the chunk's text; the rest of the chunk (role, finish, usage, tool calls), or
        None when nothing is left. The chunk itself is left as it is."""
        choices = chunk.get("choices")
        if isinstance(choices, list) and len(choices) == 1 and not chunk.get("usage"):
            choice = choices[0]  # the usual event, one token of one choice: taken at once
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if (
                isinstance(delta, dict)
                and len(delta) == 1
                and isinstance(delta.get("content"), str)
                and choice.get("finish_reason") is None
            ):
                self.texts.setdefault(choice.get("index", 0), _Text()).pending += delta["content"]
                return None
        keep = bool(chunk.get("usage"))
        rest = []
        for i, choice in enumerate(_choices(chunk)):
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                index = choice.get("index", i)
                self.texts.setdefault(index, _Text()).pending += delta["content"]
                delta = {k: v for k, v in delta.items() if k != "content"}
                choice = {**choice, "delta": delta}
            keep = keep or bool(delta) or choice.get("finish_reason") is not None
            rest.append(choice)
        return {**chunk, "choices": rest} if keep else None

    def _step(self, index: int, final: bool) -> list[dict[str, Any]]:
        """Screen choice ``index``'s held and new text; release all but the last window (all
        at the end), or end the stream when an action blocks."""
        text = self.texts[index]
        pending = text.pending
        opening = not text.released and index == min(self.texts)
        context = text.tail
        spans = [
            PiiSpan(s.entity, max(0, s.start - len(context)), s.end - len(context))
            for s in self.findings.read(context + pending, opening)
            if s.end > len(context)
        ]
        if self.findings.blocked:
            return [self._end(index)]
        cut = len(pending) if final else len(pending) - self.window
        for span in spans:  # a value across the cut goes out whole, redacted
            if span.start < cut < span.end:
                cut = span.end
        released = [s for s in spans if s.end <= cut]
        self.findings.redacted += len(released)
        out = redact(pending[:cut], released)
        text.pending = pending[cut:]
        text.released.append(out)
        text.tail = (text.tail + out)[-CONTEXT_CHARS:]
        self.findings.held_chars = max(self.findings.held_chars, len(text.pending))
        if not out:
            return []
        return [self._chunk(index, {"content": out}, None)]

    def _end(self, index: int) -> dict[str, Any]:
        """The last chunk of a blocked stream (the refusal when nothing was released yet)."""
        self.ended = True
        self.queued = []
        nothing_sent = not any(t.released and "".join(t.released) for t in self.texts.values())
        delta = {"content": self.config.refusal} if nothing_sent and self.config.refusal else {}
        return self._chunk(index, delta, CONTENT_FILTER)

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "finish_reason": finish}
        return {**self.head, "choices": [choice]}
