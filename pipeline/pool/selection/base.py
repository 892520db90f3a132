"""What every endpoint selection policy sees and returns.

Dispatch builds :class:`EndpointState` from its own in-flight counts and the endpoints' scraped
``/metrics``; the fleet simulator builds it from its simulated engines. Both call the same
:meth:`EndpointSelector.select_endpoint`, so a policy measured in ``wrp sim fleet`` is the policy
that runs in dispatch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

Tier = Literal["short", "long"]
Role = Literal["prefill", "decode", "both"]


@dataclass(frozen=True)
class EndpointState:
    """One endpoint as a policy sees it at selection time.

    ``in_flight`` is exact for the selecting process (requests it sent and has not seen finish).
    ``waiting``, ``running``, ``kv_usage`` and ``prefix_hit_rate`` come from the endpoint's
    vLLM metrics and are as old as the last scrape (``None`` before the first one).
    """

    url: str
    in_flight: int = 0
    capacity: int = 64
    waiting: float | None = None
    running: float | None = None
    kv_usage: float | None = None
    prefix_hit_rate: float | None = None
    tier: Tier | None = None
    role: Role = "both"

    @property
    def queue(self) -> float:
        """Requests queued or running there: the scrape, or this process's own count if larger."""
        scraped = (self.waiting or 0.0) + (self.running or 0.0)
        return max(float(self.in_flight), scraped)


@dataclass(frozen=True)
class RequestShape:
    """What a policy knows about the request: sizes, prefix blocks and a stable key."""

    key: str
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where a request runs: ``endpoint`` serves it; ``prefill`` (disaggregated) prefills first."""

    endpoint: str
    prefill: str | None = None


class NoEndpoint(Exception):
    """No endpoint of the pool can take this request (all filtered out, or none of its tier)."""


class EndpointSelector(ABC):
    """Chooses an endpoint among ``endpoints`` (already filtered to healthy, non-full ones)."""

    name: ClassVar[str]

    @abstractmethod
    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement: ...

    @staticmethod
    def require(endpoints: Sequence[EndpointState]) -> Sequence[EndpointState]:
        if not endpoints:
            raise NoEndpoint("no endpoint available")
        return endpoints
