"""Disaggregated prefill/decode: a prefill endpoint computes the prompt's KV, a decode endpoint
generates from it (vLLM's disaggregated-prefill proxy: the prefill request carries
``kv_transfer_params`` with ``do_remote_decode``, its reply's params go on the decode request).

Endpoints carry a ``role``; ``both`` serves either side. The prefill side uses
``prefill_within`` (prefix affinity pays off there: prefills are where cached blocks save
compute), the decode side ``decode_within``. State: that of the two inner policies.
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


class Disaggregated(EndpointSelector):
    name = "disaggregated"

    def __init__(self, prefill_within: EndpointSelector, decode_within: EndpointSelector) -> None:
        self.prefill_within = prefill_within
        self.decode_within = decode_within

    def select_endpoint(
        self, request: RequestShape, endpoints: Sequence[EndpointState]
    ) -> Placement:
        prefill = [e for e in endpoints if e.role in ("prefill", "both")]
        decode = [e for e in endpoints if e.role in ("decode", "both")]
        if not prefill or not decode:
            raise NoEndpoint("a disaggregated pool needs a prefill and a decode endpoint available")
        first = self.prefill_within.select_endpoint(request, prefill).endpoint
        return Placement(self.decode_within.select_endpoint(request, decode).endpoint, first)
