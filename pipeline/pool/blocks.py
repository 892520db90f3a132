"""Prefix blocks: the unit that prefix caches and prefix affinity share.

A prompt is cut into pieces (words and punctuation, the simulator's token estimate) and the
pieces into blocks of ``BLOCK_SIZE``. Block *i*'s hash chains every piece before it, as vLLM's
prefix cache does, so two prompts share block *i* only when they share the whole prefix up to it.
Traces that carry their own block ids (Mooncake: 512 tokens per id) expand to the same chained
form with :func:`expand_trace_blocks`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

#: Word and punctuation pieces: a lower bound of what a subword tokenizer counts.
PIECES = re.compile(r"\w+|[^\w\s]")
#: Tokens per KV block (vLLM's default block size).
BLOCK_SIZE = 16


def prompt_pieces(text: str) -> list[str]:
    return PIECES.findall(text)


def estimate_tokens(text: str) -> int:
    return max(1, len(prompt_pieces(text)))


def _chain(previous: int, item: bytes) -> int:
    digest = hashlib.blake2b(previous.to_bytes(8, "little") + item, digest_size=8).digest()
    return int.from_bytes(digest, "little")


def block_hashes(pieces: Sequence[str], block_size: int = BLOCK_SIZE) -> tuple[int, ...]:
    """Chained hashes of every *full* block of ``pieces`` (a partial tail block is not cached)."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(pieces) - block_size + 1, block_size):
        previous = _chain(previous, "\x1f".join(pieces[start : start + block_size]).encode())
        hashes.append(previous)
    return tuple(hashes)


def text_block_hashes(text: str, block_size: int = BLOCK_SIZE) -> tuple[int, ...]:
    return block_hashes(prompt_pieces(text), block_size)


def expand_trace_blocks(
    trace_ids: Sequence[int], prompt_tokens: int, trace_block: int, block_size: int = BLOCK_SIZE
) -> tuple[int, ...]:
    """Chained ``block_size`` hashes for a prompt described by coarse trace block ids."""
    hashes: list[int] = []
    previous = 0
    full = prompt_tokens // block_size
    per_id = trace_block // block_size
    for index in range(full):
        trace_id = trace_ids[min(index // per_id, len(trace_ids) - 1)] if trace_ids else 0
        item = trace_id.to_bytes(8, "little") + (index % per_id).to_bytes(4, "little")
        previous = _chain(previous, item)
        hashes.append(previous)
    return tuple(hashes)


def chat_prompt(texts: Sequence[str]) -> str:
    """The prompt a chat request's messages make, as the simulator and dispatch both count it."""
    return "\n".join(texts)
