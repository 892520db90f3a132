"""Endpoint selection policies, one module each; :func:`build_selector` makes a pool's policy."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.policy import BasePolicy, SelectionConfig
from pipeline.pool.selection.base import (
    EndpointSelector,
    EndpointState,
    NoEndpoint,
    Placement,
    RequestShape,
)
from pipeline.pool.selection.context_length import ContextLengthPools
from pipeline.pool.selection.disaggregated import Disaggregated
from pipeline.pool.selection.kv_aware import KvAware
from pipeline.pool.selection.least_outstanding import LeastOutstanding
from pipeline.pool.selection.power_of_two import PowerOfTwo
from pipeline.pool.selection.prefix_affinity import PrefixAffinity
from pipeline.pool.selection.round_robin import RoundRobin

__all__ = [
    "EndpointSelector",
    "EndpointState",
    "NoEndpoint",
    "Placement",
    "RequestShape",
    "build_selector",
]


def _base(policy: BasePolicy, config: SelectionConfig) -> EndpointSelector:
    makers: dict[str, Callable[[], EndpointSelector]] = {
        "round_robin": RoundRobin,
        "least_outstanding": LeastOutstanding,
        "power_of_two": PowerOfTwo,
        "prefix_affinity": lambda: PrefixAffinity(config.load_factor, config.affinity_tokens),
        "kv_aware": KvAware,
    }
    return makers[policy]()


def build_selector(config: SelectionConfig) -> EndpointSelector:
    if config.policy == "context_length":
        assert config.boundary_tokens is not None
        return ContextLengthPools(config.boundary_tokens, _base(config.within, config))
    if config.policy == "disaggregated":
        return Disaggregated(_base(config.prefill_within, config), _base(config.within, config))
    return _base(config.policy, config)
