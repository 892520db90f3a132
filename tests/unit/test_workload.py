import numpy as np

from pipeline.envelope import ChatRequest
from pipeline.policy import ContextClass
from pipeline.workload.domain import CentroidClassifier
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
    assert s.turns == 2
    assert s.tools_present and s.images_present
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


def test_nearest_centroid_picks_the_closest_label():
    clf = CentroidClassifier.from_examples(
        {
            "x": np.array([[1.0, 0.0], [0.9, 0.1]]),
            "y": np.array([[0.0, 1.0]]),
        }
    )
    labels = [label for label, _ in clf.classify(np.array([[0.8, 0.2], [0.1, 0.9]]))]
    assert labels == ["x", "y"]
