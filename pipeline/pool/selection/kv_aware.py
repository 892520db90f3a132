"""KV/queue aware: score endpoints from their scraped vLLM metrics, as llm-d's scheduler does.

score = queue_weight * (1 - queue / max queue) + kv_weight * (1 - KV cache usage)
        + prefix_weight * prefix-cache hit rate

``queue`` is waiting + running from ``/metrics`` (or this process's in-flight count if larger,
which covers requests sent since the last scrape), KV usage is ``vllm:kv_cache_usage_perc`` and
the hit rate is ``vllm:prefix_cache_hits / vllm:prefix_cache_queries`` over the last scrape
interval. State: the last scrape of every endpoint, shared by every selection in the process and
as old as the scrape interval; each dispatch instance scrapes on its own, so all instances see
the whole fleet's load (everyone's requests), unlike in-flight counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.pool.selection.base import EndpointSelector, EndpointState, Placement, RequestShape


class KvAware(EndpointSelector):
    name = "kv_aware"

    def __init__(
        self, queue_weight: float = 1.0, kv_weight: float = 1.0, prefix_weight: float = 0.5
    ) -> None:
        self.weights = (queue_weight, kv_weight, prefix_weight)

    def score(self, endpoint: EndpointState, max_queue: float) -> float:
        queue_weight, kv_weight, prefix_weight = self.weights
        return (
            queue_weight * (1 - endpoint.queue / max_queue)
            + kv_weight * (1 - (endpoint.kv_usage or 0.0))
            + prefix_weight * (endpoint.prefix_hit_rate or 0.0)
        )

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        candidates = self.require(endpoints)
        max_queue = max(1.0, *(e.queue for e in candidates))
        best = max(candidates, key=lambda e: (self.score(e, max_queue), -e.in_flight))
        return Placement(best.url)
