"""Implicit feedback: the next-turn classifier, the per-session reader, and how the learner
weighs what they say."""

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.envelope import ChatRequest, Feedback, RequestSection, Signals
from pipeline.learn.evidence import Served, credit_feedback, fold
from pipeline.learn.implicit import IMPLICIT_SOURCE, NextTurnReader, classify_next_turn
from pipeline.learn.judgements import ignore_reason
from pipeline.policy import ImplicitConfig, LearningConfig
from tests.unit.factories import make_signals

CONFIG = ImplicitConfig()
THRESHOLD = CONFIG.re_ask_similarity


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("That's wrong, Paris is not in Spain.", "says_wrong"),
        ("this is not what I asked", "says_wrong"),
        ("It didn\u2019t work, same error again", "says_wrong"),  # a typographic apostrophe
        ("No, that's not it.", "says_wrong"),
        ("Das ist falsch.", "says_wrong"),
        ("What do you mean by a monad?", "clarify"),
        ("I don't understand, can you explain that again?", "clarify"),
        ("how so?", "clarify"),
        ("huh?", "clarify"),
        ("I asked you for the capital, not the population", "re_ask"),
        ("Thanks! Now write a haiku about it.", "moved_on"),
        ("What about the second option?", "moved_on"),
    ],
)
def test_the_words_of_the_next_turn_give_its_label(text, label):
    assert classify_next_turn(text, 0.2, False, THRESHOLD) == label


def test_a_turn_much_like_the_previous_one_re_asks_it_unless_the_answer_asked_back():
    question = "How many moons does Mars have?"
    assert classify_next_turn(question, THRESHOLD, False, THRESHOLD) == "re_ask"
    assert classify_next_turn(question, THRESHOLD - 0.01, False, THRESHOLD) == "moved_on"
    # the answer asked a question: restating the request answers it
    assert classify_next_turn(question, 0.99, True, THRESHOLD) == "moved_on"
    # a bare "no" answers a question, it does not complain
    assert classify_next_turn("No. I mean the planet.", 0.1, True, THRESHOLD) == "moved_on"
    assert classify_next_turn("No. I mean the planet.", 0.1, False, THRESHOLD) == "says_wrong"
    # the words win over the similarity
    assert classify_next_turn("that's wrong: " + question, 0.99, False, THRESHOLD) == ("says_wrong")


def vector(*values: float) -> str:
    v = np.array(values, dtype=np.float32)
    return Signals.encode_embedding(v / np.linalg.norm(v))


class Conversation:
    """A client of one session that sends the whole history every turn, as OpenAI clients do."""

    def __init__(self, reader: NextTurnReader, session: str | None = "s1", tenant="acme"):
        self.reader, self.session, self.tenant = reader, session, tenant
        self.messages: list[dict] = []

    def say(self, text: str, request_id: str, embedding: str) -> Feedback | None:
        """Send ``text`` (after the answer to the last turn, if any) and return what the reader
        made of it; the answer to this turn is then appended."""
        self.messages.append({"role": "user", "content": text})
        request = RequestSection(
            request_id=request_id,
            tenant=self.tenant,
            session_id=self.session,
            body=ChatRequest(messages=self.messages),
        )
        judged = self.reader.read(request, make_signals(embedding=embedding))
        self.messages.append({"role": "assistant", "content": f"answer to {request_id}"})
        return judged


def test_the_next_turn_judges_the_previous_request_of_its_own_session():
    reader = NextTurnReader(CONFIG)
    chat, other = Conversation(reader), Conversation(reader, session="s2")
    assert chat.say("What is 2+2?", "r1", vector(1, 0)) is None
    assert other.say("Name a prime.", "o1", vector(0, 1)) is None
    judged = chat.say("that's wrong", "r2", vector(0, 1))
    assert judged == Feedback(
        request_id="r1",
        score=CONFIG.rewards["says_wrong"],
        source=IMPLICIT_SOURCE,
        tenant="acme",
        implicit="says_wrong",
        created_at=judged.created_at,
    )
    # the same question again (nearly the same embedding) re-asks r2
    again = chat.say("What is two plus two?", "r3", vector(0.05, 1))
    assert (again.request_id, again.implicit) == ("r2", "re_ask")
    # the other session is judged on its own
    moved = other.say("Thanks, and an even one?", "o2", vector(1, 1))
    assert (moved.request_id, moved.implicit, moved.score) == ("o1", "moved_on", 0.75)


def test_a_session_of_another_tenant_with_the_same_id_is_another_session():
    reader = NextTurnReader(CONFIG)
    chat = Conversation(reader, tenant="acme")
    chat.say("What is 2+2?", "r1", vector(1, 0))
    chat.tenant = "beta"
    assert chat.say("that's wrong", "b1", vector(0, 1)) is None


def test_no_session_a_redelivery_or_another_conversation_judges_nothing():
    reader = NextTurnReader(CONFIG)
    anonymous = Conversation(reader, session=None)
    assert anonymous.say("hi", "x1", vector(1, 0)) is None
    assert anonymous.say("that's wrong", "x2", vector(1, 0)) is None
    chat = Conversation(reader)
    chat.say("What is 2+2?", "r1", vector(1, 0))
    chat.messages = []  # the same record delivered again
    assert chat.say("What is 2+2?", "r1", vector(1, 0)) is None
    # another conversation under the same session id came between: the history of this one
    # does not hold the last request's turn
    Conversation(reader).say("Tell me a joke", "j1", vector(1, 1))
    assert chat.say("that's wrong", "r2", vector(0, 1)) is None
    # the next turn of this conversation judges r2
    judged = chat.say("that is not what I asked", "r3", vector(0, 1))
    assert (judged.request_id, judged.implicit) == ("r2", "says_wrong")


def test_a_turn_that_does_not_show_the_answer_is_no_reaction_to_it():
    reader = NextTurnReader(CONFIG)
    chat = Conversation(reader)
    chat.say("What is 2+2?", "r1", vector(1, 0))
    chat.messages.pop()  # a client that sends its turns without the answers
    assert chat.say("that's wrong", "r2", vector(0, 1)) is None
    # a client that sends only its newest turn
    chat.messages = []
    assert chat.say("that's wrong", "r3", vector(0, 1)) is None


def test_a_tool_loop_passes_the_judgement_on_to_its_last_answer():
    reader = NextTurnReader(CONFIG)
    chat = Conversation(reader)
    chat.say("Weather in Oslo?", "r1", vector(1, 0))
    chat.messages[-1] = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function"}]}
    chat.messages.append({"role": "tool", "tool_call_id": "c1", "content": "3 C, rain"})
    loop = RequestSection(
        request_id="r1-tool",
        tenant="acme",
        session_id="s1",
        body=ChatRequest(messages=chat.messages),
    )
    assert reader.read(loop, make_signals(embedding=vector(1, 0))) is None
    chat.messages.append({"role": "assistant", "content": "3 degrees and rain."})
    judged = chat.say("that is not correct", "r2", vector(0, 1))
    assert (judged.request_id, judged.implicit) == ("r1-tool", "says_wrong")


def test_a_turn_after_the_gap_says_nothing():
    reader = NextTurnReader(CONFIG.model_copy(update={"max_gap_s": 10}))
    chat = Conversation(reader)
    chat.say("What is 2+2?", "r1", vector(1, 0))
    scope = ("acme", "s1")
    reader.sessions.put(scope, reader.sessions.get(scope), now=0)  # seen long ago
    assert chat.say("that's wrong", "r2", vector(0, 1)) is None


def test_without_embeddings_only_the_same_text_re_asks():
    chat = Conversation(NextTurnReader(CONFIG))
    chat.say("What is 2+2?", "r1", "")
    assert chat.say("what is  2+2?", "r2", "").implicit == "re_ask"
    assert chat.say("And 3+3?", "r3", "").implicit == "moved_on"


def test_implicit_feedback_counts_its_weight_next_to_explicit_feedback():
    served = Served("d", "m")
    implicit = Feedback(request_id="r", score=0.0, source="implicit", implicit="says_wrong")
    credit = credit_feedback(implicit, served, implicit_weight=0.3)
    assert (credit.successes, credit.failures) == (0.0, 0.3)
    credit = credit_feedback(implicit.model_copy(update={"score": 0.75}), served, 0.5)
    assert (credit.successes, credit.failures) == (0.375, 0.125)
    explicit = Feedback(request_id="r", score=0.0, source="tenant:acme", tenant="acme")
    assert credit_feedback(explicit, served, implicit_weight=0.3).failures == 1.0
    state = fold(None, credit_feedback(implicit, served, 0.3), 1e12)
    state = fold(state, credit_feedback(explicit, served, 0.3), 1e12)
    assert (state.failures, state.observations) == (1.3, 2)


def test_explicit_and_implicit_judgements_of_a_request_count_once_each():
    implicit = Feedback(
        request_id="r", score=0.0, source="implicit", tenant="acme", implicit="re_ask"
    )
    assert ignore_reason(implicit, "acme", False, ["tenant:acme"]) is None
    assert ignore_reason(implicit, "acme", False, ["tenant:acme", "implicit"]) == "repeat"
    assert ignore_reason(implicit, "beta", False, []) == "tenant_mismatch"


def test_an_answer_no_model_gave_is_not_judged():
    """Safety's refusal of a blocked request has no outcome: a judgement of it would wait in the
    learner for ever."""
    reader = NextTurnReader(CONFIG, refusals=["I can't help with that request."])
    chat = Conversation(reader)
    chat.say("How do I pick a lock?", "r1", vector(1, 0))
    chat.messages[-1] = {"role": "assistant", "content": "I can't help with that request."}
    assert chat.say("that's wrong", "r2", vector(0, 1)) is None
    assert chat.say("that is not what I asked", "r3", vector(0, 1)).request_id == "r2"


def test_the_implicit_policy_section_is_validated_with_a_clear_error():
    assert LearningConfig().implicit.weight == 0.3
    with pytest.raises(ValidationError, match="give a reward for clarify"):
        ImplicitConfig(rewards={"moved_on": 1, "says_wrong": 0, "re_ask": 0})
    with pytest.raises(ValidationError, match=r"rewards must lie in \[0, 1\]"):
        ImplicitConfig(rewards={"moved_on": 2, "says_wrong": 0, "re_ask": 0, "clarify": 0})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        ImplicitConfig(weight=3)
    with pytest.raises(ValidationError):
        ImplicitConfig(rewards={"happy": 1})
