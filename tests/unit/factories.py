"""Test data shared by unit tests."""

from typing import Any

from pipeline.envelope import Signals


def make_signals(**overrides: Any) -> Signals:
    """Signals of a short English one-turn request; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "prompt_tokens": 50,
        "context_class": "short",
        "messages": 1,
        "turns": 1,
        "tools_present": False,
        "tool_loop": False,
        "images_present": False,
        "audio_present": False,
        "language": "en",
        "language_score": 0.99,
        "system_fingerprint": None,
        "prefix_hashes": [],
        "expected_output_tokens": 256,
        "load_shape": "balanced",
        "session": "cold",
        "domain": "other",
        "domain_score": 0.9,
        "complexity": "medium",
        "complexity_score": 0.5,
        "embedding": "",
        "encoder": "test",
    }
    return Signals(**{**fields, **overrides})
