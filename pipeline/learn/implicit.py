"""Implicit feedback: what a user's next turn in a session says about the previous answer.

Most users never click thumbs, but their next turn tells: they move on (a new question, or one
that builds on the answer), say the answer is wrong, ask what it meant, or ask the same question
again. :func:`classify_next_turn` reads that from cheap features: lexical cues (English, with a
few German, French, Spanish, Italian and Portuguese ones) and the cosine between the two user
turns' embeddings, which the signals stage has computed anyway (no extra encoder pass).

:class:`NextTurnReader` keeps, per session, the last request's id, its user turn's digest and
embedding, and turns the next request of the session into a :class:`Feedback` for the previous
request (``source`` ``implicit``, ``score`` the label's reward, the label in ``implicit``), when
the next request shows the answer it reacts to (:func:`continues`).
Requests are keyed by session, so one session's turns reach one signals instance in order; the
memory is that instance's own, so after a restart or a rebalance the first turn of each session
judges nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_args

import numpy as np

from pipeline.envelope import ChatRequest, Feedback, ImplicitLabel, RequestSection, Signals
from pipeline.policy import ImplicitConfig
from pipeline.sessions import SessionMemory

IMPLICIT_SOURCE = "implicit"
IMPLICIT_LABELS: tuple[ImplicitLabel, ...] = get_args(ImplicitLabel)
#: only the start of a turn is read for cues: complaints and questions come first
CUE_CHARS = 400
#: request ids of a session remembered, so a redelivered turn is not read as a new one
SEEN_PER_SESSION = 8

_APOS = "['\u2019]"  # a straight or typographic apostrophe
SAYS_WRONG = re.compile(
    rf"\b(?:(?:that|this|it|you){_APOS}?(?:s|re| is| are)? (?:(?:just|so|completely|totally|"
    rf"all|simply|still) )?(?:wrong|incorrect|false|not (?:right|true|correct|accurate|"
    rf"helpful|what i)|a lie|nonsense|bullshit|useless|unhelpful|stupid|dumb|ridiculous)"
    rf"|(?:does|did|do){_APOS}?n{_APOS}?t (?:work|help|answer|make sense)"
    rf"|(?:does|did|do) not (?:work|help|answer|make sense)"
    rf"|not what i (?:asked|meant|wanted|said)|i (?:just|already) (?:did|said|told|asked)"
    rf"|you (?:don{_APOS}?t|do not|didn{_APOS}?t|did not) (?:understand|get it|listen|answer)"
    rf"|makes no sense|you(?:{_APOS}re| are) (?:wrong|mistaken|not (?:smart|helpful))"
    rf"|you suck|wrong answer|that{_APOS}?s not (?:it|true|right)"
    rf"|\bfalsch\b|stimmt nicht|c{_APOS}est faux|\bincorrecto\b|est[aá] mal|\berrado\b"
    rf"|\bsbagliato\b|n{_APOS}est pas (?:vrai|correct)"
    rf"|(?:mistakes?|errors?|incorrect|wrong) \w* ?in your (?:previous |last |earlier )?"
    rf"(?:response|answer|reply)"
    rf"|fuck (?:you|off)|screw you|shut up|you (?:stink|idiot|moron|weirdo)"
    rf"|you(?:{_APOS}re| are) (?:an? )?(?:idiot|moron|joke|making me sick))",
    re.IGNORECASE,
)
#: a turn that opens with a bare "no": a complaint, unless the answer asked a question
SAYS_NO = re.compile(r"^\s*(?:no|nope|nah|wrong|nein|non)\b\s*[,.!]", re.IGNORECASE)
CLARIFY = re.compile(
    rf"\b(?:what do(?:es)? (?:you|that|this|it) mean|what did you mean|what{_APOS}?s that mean"
    rf"|i (?:don{_APOS}?t|do not) (?:understand|get it|follow)"
    rf"|(?:can|could|would) you (?:please )?(?:explain|elaborate|clarify|rephrase)"
    rf"(?: on)?(?: that| this| it)?\s*\??\s*$"
    rf"|elaborate on (?:that|this|it)|explain (?:that|this|it) (?:again|better|more simply)"
    rf"|explain again|explain what you mean|how so\b|why not\b"
    rf"|what (?:makes|made) you (?:think|say)|why (?:do|would|did) you (?:think|say)"
    rf"|in simpler terms"
    rf"|like i{_APOS}?m (?:five|5)|is (?:this|that|it) (?:true|right|correct)|are you sure"
    rf"|(?:do )?say more"
    rf"|was meinst du|was hei(?:ß|ss)t das|qu{_APOS}est-ce que (?:tu veux|vous voulez) dire"
    rf"|qu[eé] quieres decir|no entiendo|je ne comprends pas|non capisco)"
    rf"|^\s*(?:what|huh|pardon|sorry|excuse me|meaning)\s*\?+\s*$"
    rf"|^\s*\w+ (?:for )?what\s*\?+\s*$|^\s*\w+(?: \w+)?\s*\?+\s*$",
    re.IGNORECASE,
)
RE_ASK = re.compile(
    rf"\b(?:i (?:just )?asked (?:you|for|about)|my question (?:was|is)|answer (?:the|my) "
    rf"question|(?:can|will) you do it or not|(?:just )?tell me (?:already|again)"
    rf"|i still (?:want|need)|(?:let me|i{_APOS}?ll) (?:ask|try) again|once more,|again:)"
    rf"|^\s*just (?:tell|give|come up|answer|do it|help)",
    re.IGNORECASE,
)


def text_digest(text: str) -> str:
    return hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()[:16]


def lexical_cue(text: str, answer_asked: bool = False) -> ImplicitLabel | None:
    """The label the turn's own words give, if any: a complaint, then a question about the
    answer, then an explicit re-ask."""
    head = text[:CUE_CHARS]
    if SAYS_WRONG.search(head) or (not answer_asked and SAYS_NO.search(head)):
        return "says_wrong"
    if CLARIFY.search(head):
        return "clarify"
    if RE_ASK.search(head):
        return "re_ask"
    return None


def classify_next_turn(
    text: str, similarity: float | None, answer_asked: bool, re_ask_similarity: float
) -> ImplicitLabel:
    """What the next user turn ``text`` says about the answer before it.

    ``similarity``: cosine between this turn and the previous user turn (None: unknown);
    ``answer_asked``: the answer ended with a question, so a turn that restates the request
    answers it rather than re-asks."""
    cue = lexical_cue(text, answer_asked)
    if cue is not None:
        return cue
    if similarity is not None and similarity >= re_ask_similarity and not answer_asked:
        return "re_ask"
    return "moved_on"


@dataclass(frozen=True)
class PreviousTurn:
    """What a session remembers of its last request: enough to judge it by the next turn."""

    request_id: str
    digest: str
    embedding: np.ndarray | None  # float16: a session costs about 1 KB
    seen: tuple[str, ...]


def _last_user_index(body: ChatRequest) -> int | None:
    """Index of the last message when it is a user turn with text (else None: a tool loop,
    an assistant prefill)."""
    last = body.messages[-1]
    return len(body.messages) - 1 if last.role == "user" and last.text() else None


def answer_asked(body: ChatRequest, user_index: int) -> bool:
    """The assistant turn just before the user's ended with a question."""
    before = body.messages[user_index - 1] if user_index > 0 else None
    return (
        before is not None and before.role == "assistant" and before.text().rstrip().endswith("?")
    )


def continues(body: ChatRequest, user_index: int, previous: PreviousTurn) -> bool:
    """The request answers the previous one: its latest earlier user turn is the previous
    request's, and an assistant turn (the answer the user saw) follows it. A client that sends
    only its newest turn shows no answer, so it gets no implicit feedback."""
    answered = False
    for message in reversed(body.messages[:user_index]):
        if message.role == "assistant":
            answered = True
        elif message.role == "user" and message.text():
            return answered and text_digest(message.text()) == previous.digest
    return False


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    a, b = a.astype(np.float32), b.astype(np.float32)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm > 0 else None


class NextTurnReader:
    """Per-session memory of the last request, and the implicit feedback each next turn gives."""

    def __init__(
        self, config: ImplicitConfig, refusals: Iterable[str] = (), capacity: int = 100_000
    ) -> None:
        self.config = config
        #: answers the pipeline gives without a model (safety's refusal): no outcome ever comes
        #: for such a request, so a judgement of it would wait in the learner for ever
        self.refusals = {text.strip() for text in refusals if text.strip()}
        self.sessions: SessionMemory[PreviousTurn] = SessionMemory(config.max_gap_s, capacity)

    def read(self, request: RequestSection, signals: Signals) -> Feedback | None:
        """Remember ``request`` as its session's last and return the feedback its user turn
        gives the previous request of the session, if it gives any."""
        scope, body = request.session_scope, request.body
        if scope is None or body is None:
            return None
        previous = self.sessions.get(scope)
        if previous is not None and request.request_id in previous.seen:
            return None  # a redelivery: already read
        index = _last_user_index(body)
        embedding = (
            Signals.decode_embedding(signals.embedding).astype(np.float16)
            if signals.embedding
            else None
        )
        text = body.messages[index].text() if index is not None else ""
        digest = text_digest(text) if index is not None else ""
        seen = (*(previous.seen if previous else ()), request.request_id)[-SEEN_PER_SESSION:]
        if index is None:  # a tool loop answers the same user turn: judge its last answer later
            if previous is not None:
                self.sessions.put(
                    scope,
                    PreviousTurn(request.request_id, previous.digest, previous.embedding, seen),
                )
            return None
        self.sessions.put(scope, PreviousTurn(request.request_id, digest, embedding, seen))
        if previous is None or not continues(body, index, previous):
            return None
        if index > 0 and body.messages[index - 1].text().strip() in self.refusals:
            return None  # the previous request was blocked: no model answered it
        similarity = 1.0 if digest == previous.digest else cosine(embedding, previous.embedding)
        label = classify_next_turn(
            text, similarity, answer_asked(body, index), self.config.re_ask_similarity
        )
        return Feedback(
            request_id=previous.request_id,
            score=self.config.rewards[label],
            source=IMPLICIT_SOURCE,
            tenant=request.tenant,
            implicit=label,
        )
