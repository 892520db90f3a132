"""A request as endpoint selection sees it: its size and its prefix blocks.

The blocks are the one prefix-block scheme (:mod:`pipeline.pool.blocks`), the one the simulated
engines' prefix caches use, so prefix affinity and KV-aware selection match what a pool reuses.
"""

from __future__ import annotations

from pipeline.envelope import Envelope
from pipeline.pool.blocks import block_hashes, chat_prompt, prompt_pieces
from pipeline.pool.selection import RequestShape


def request_shape(env: Envelope) -> RequestShape:
    """``env``'s shape: keyed by its session (else its id), tokens as the larger of the prompt's
    pieces and the signals' count, its answer as asked or expected."""
    body, signals = env.request.body, env.signals
    assert body is not None and signals is not None
    pieces = prompt_pieces(chat_prompt([m.text() for m in body.messages]))
    return RequestShape(
        key=env.request.session_id or env.request.request_id,
        prompt_tokens=max(len(pieces), signals.prompt_tokens),
        output_tokens=body.max_tokens or signals.expected_output_tokens,
        blocks=block_hashes(pieces),
    )
