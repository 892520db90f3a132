"""Prefix-block hashes: which KV/prefix-cache blocks a request could reuse on an endpoint.

The prompt is serialised as a chat template would (role, then content, message after message)
and cut into blocks of ``BLOCK_CHARS`` characters (~512 tokens, the block size of the Mooncake
traces). Each hash covers its block *and every block before it*, like vLLM's prefix cache, so
two requests share hash i exactly when their first i+1 blocks are identical.
"""

from __future__ import annotations

import hashlib
import json

from pipeline.envelope import ChatRequest

#: ~512 tokens at ~4 characters per token.
BLOCK_CHARS = 2048
#: Only the first blocks matter for affinity (system prompt, early turns); bounds the envelope.
MAX_BLOCKS = 32


def serialise(body: ChatRequest) -> str:
    parts = []
    if body.tools:
        parts.append("tools:" + json.dumps(body.tools, sort_keys=True))
    for m in body.messages:
        parts.append(f"<|{m.role}|>{m.text()}")
    return "\n".join(parts)


def prefix_hashes(body: ChatRequest, max_blocks: int = MAX_BLOCKS) -> list[str]:
    """Chained hashes of the complete blocks of the serialised prompt (partial tail excluded)."""
    text = serialise(body).encode("utf-8", "replace")
    step = BLOCK_CHARS
    hashes: list[str] = []
    chain = hashlib.sha256()
    for start in range(0, min(len(text) // step, max_blocks) * step, step):
        chain.update(text[start : start + step])
        hashes.append(chain.copy().hexdigest()[:16])
    return hashes
