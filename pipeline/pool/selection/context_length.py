"""Context-length pools: a short pool and a long pool split at a token boundary.

Endpoints carry a ``tier``. A request whose prompt plus expected output fits in
``boundary_tokens`` goes to the short tier, anything longer to the long tier; a short request
also spills to the long tier when no short endpoint is available (all full or open-circuit).
Short requests then never queue behind long prefills (head-of-line blocking), and the short tier
can run more sequences per GPU. Inside a tier the ``within`` policy chooses. State: that of the
``within`` policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.pool.selection.base import (
    EndpointSelector,
    EndpointState,
    NoEndpoint,
    Placement,
    RequestShape,
)


class ContextLengthPools(EndpointSelector):
    name = "context_length"

    def __init__(self, boundary_tokens: int, within: EndpointSelector) -> None:
        self.boundary_tokens = boundary_tokens
        self.within = within

    def tier_of(self, request: RequestShape) -> str:
        fits = request.prompt_tokens + request.output_tokens <= self.boundary_tokens
        return "short" if fits else "long"

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        tier = self.tier_of(request)
        chosen = [e for e in endpoints if (e.tier or "long") == tier]
        if not chosen and tier == "short":
            chosen = [e for e in endpoints if e.tier == "long"]
        if not chosen:
            raise NoEndpoint(
                f"no {tier}-context endpoint available for {request.prompt_tokens} prompt tokens"
            )
        return self.within.select_endpoint(request, chosen)
