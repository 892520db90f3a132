"""static: the first fitting candidate (the policy's order of preference), m* = candidates[0]."""

from __future__ import annotations

from pipeline.router.strategies.base import Selection, SelectionContext


def select(ctx: SelectionContext) -> Selection:
    first = ctx.candidates[0]
    return Selection(first, first, {})
