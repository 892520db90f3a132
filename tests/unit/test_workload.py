from pipeline.envelope import ChatRequest
from pipeline.policy import ContextClass, KeywordRule, LoadShapeConfig
from pipeline.sessions import SessionMemory
from pipeline.workload.language import LanguageDetector
from pipeline.workload.load_shape import expected_output_tokens, load_shape
from pipeline.workload.rules import KeywordMatcher
from pipeline.workload.structural import context_class, extract_structural, routing_text

CLASSES = [ContextClass(name="short", max_tokens=10), ContextClass(name="long", max_tokens=100)]


def words(text: str) -> int:
    return len(text.split())


def test_context_class_uses_the_policy_boundaries():
    assert context_class(10, CLASSES) == "short"
    assert context_class(11, CLASSES) == "long"
    assert context_class(10_000, CLASSES) == "long"


def test_structural_signals_of_an_agentic_multimodal_multiturn_request():
    body = ChatRequest(
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is in this picture"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
        tools=[{"type": "function", "function": {"name": "f"}}],
    )
    s = extract_structural(body, words, CLASSES)
    assert (s.turns, s.messages) == (2, 4)
    assert s.tools_present and s.images_present and not s.audio_present and not s.tool_loop
    assert s.system_fingerprint is not None and len(s.system_fingerprint) == 16
    assert s.context_class == "long"
    assert routing_text(body) == "what is in this picture"


def test_fingerprint_is_stable_and_absent_without_system_prompt():
    a = ChatRequest(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "x"}])
    b = ChatRequest(messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "y"}])
    c = ChatRequest(messages=[{"role": "user", "content": "x"}])
    sa, sb, sc = (extract_structural(r, words, CLASSES) for r in (a, b, c))
    assert sa.system_fingerprint == sb.system_fingerprint
    assert sc.system_fingerprint is None


def test_tool_loop_is_active_when_the_newest_turn_is_a_tool_result():
    body = ChatRequest(
        messages=[
            {"role": "user", "content": "weather in Oslo?"},
            {"role": "assistant", "tool_calls": [{"id": "1", "type": "function"}]},
            {"role": "tool", "tool_call_id": "1", "content": "12C"},
        ]
    )
    assert extract_structural(body, words, CLASSES).tool_loop


def test_keyword_rules_any_all_none_and_regex():
    rules = [
        KeywordRule(name="py", any=["python", "pip"], none=["snake"]),
        KeywordRule(name="both", all=["alpha", "beta"]),
        KeywordRule(name="fence", any=["```"], regex=False),
        KeywordRule(name="def", any=[r"\bdef \w+\("], regex=True, case_sensitive=True),
    ]
    m = KeywordMatcher(rules)
    assert m.matches("install it with PIP") == ["py"]
    assert m.matches("a python snake") == []
    assert m.matches("alpha and beta") == ["both"]
    assert m.matches("only alpha; the pipeline runs") == []
    assert m.matches("```\ndef f(x):") == ["fence", "def"]
    assert m.matches("DEF F(X)") == []


def test_load_shape_from_prompt_and_expected_output():
    config = LoadShapeConfig()
    assert expected_output_tokens(None, "math", {"math": 700}, config) == 700
    assert expected_output_tokens(50, "math", {"math": 700}, config) == 50
    assert expected_output_tokens(None, "law", {}, config) == config.default_output_tokens
    assert load_shape(8000, 200, config) == "prefill_heavy"
    assert load_shape(20, 700, config) == "decode_heavy"
    assert load_shape(300, 300, config) == "balanced"


def test_language_detection_and_undetermined_text():
    detector = LanguageDetector()
    assert detector.detect("Bonjour, comment allez-vous aujourd'hui ?")[0] == "fr"
    assert detector.detect("Where is the nearest train station?")[0] == "en"
    assert detector.detect("   ") == ("und", 0.0)


def test_session_memory_expires_and_evicts():
    memory: SessionMemory[int] = SessionMemory(ttl_s=10, capacity=2)
    memory.put("a", 1, now=0)
    assert memory.get("a", now=5) == 1 and memory.get("a", now=11) is None
    for key in "bcd":
        memory.put(key, 1, now=20)
    assert len(memory) == 2 and memory.get("b", now=20) is None
