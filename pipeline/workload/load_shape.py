"""Prefill-heavy vs decode-heavy: prompt tokens against the answer we expect.

Expected output tokens = min(max_tokens, the domain's prior) where the prior is the median
answer length of that MMLU-Pro category (carried in the domain head's metadata), else the
policy's ``load_shape.default_output_tokens``.
"""

from __future__ import annotations

from pipeline.policy import LoadShapeConfig


def expected_output_tokens(
    max_tokens: int | None, domain: str, priors: dict[str, int], config: LoadShapeConfig
) -> int:
    prior = priors.get(domain, config.default_output_tokens)
    return min(max_tokens, prior) if max_tokens else prior


def load_shape(prompt_tokens: int, output_tokens: int, config: LoadShapeConfig) -> str:
    ratio = prompt_tokens / max(output_tokens, 1)
    if ratio >= config.prefill_ratio:
        return "prefill_heavy"
    if ratio <= config.decode_ratio:
        return "decode_heavy"
    return "balanced"
