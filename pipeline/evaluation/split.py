"""The one train/eval split used everywhere, so heads never train on evaluation rows.

Every offline evaluation and every trained head must call :func:`split_of` with a stable key
for a row (or for a group of rows that must stay together, e.g. a template id) rather than
shuffling on its own: the split is then deterministic across runs, machines and Python
versions (no ``hash()`` randomisation), and a row that is ``"eval"`` for one component is
``"eval"`` for all of them as long as they use the same key and share.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "eval"]


def _position(key: str) -> float:
    """The key's sha256 read as a number in [0, 1)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def fold_of(key: str, folds: int) -> int:
    """Which of ``folds`` cross-validation folds the key falls in (the same key, the same fold)."""
    return min(int(_position("fold:" + key) * folds), folds - 1)


def split_of(key: str, eval_share: float = 0.2) -> Split:
    """``"eval"`` for about ``eval_share`` of keys, ``"train"`` for the rest.

    The key's sha256 is read as a number in [0, 1); keys below ``eval_share`` are evaluation
    rows. A given key always lands on the same side, and raising the share only moves keys
    from train to eval, never the other way.
    """
    if not 0.0 <= eval_share <= 1.0:
        raise ValueError(f"eval_share must be in [0, 1], got {eval_share}")
    return "eval" if _position(key) < eval_share else "train"
