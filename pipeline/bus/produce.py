"""Producing (step 4 of the runner): a stage's outputs as keyed Kafka records, every
acknowledgement awaited before the records they answer for count as done."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.bus.codec import REQUEST_ID_HEADER, encode
from pipeline.bus.stage import Outbound
from pipeline.envelope import Envelope
from pipeline.tracing import TRACEPARENT_HEADER


async def produce(producer: Any, outputs: list[Outbound]) -> None:
    """Send ``outputs`` in order, keyed (per-key order holds), and await every acknowledgement.
    An envelope carries its request id as a header (followers skip others' replies undecoded),
    and a record its trace context when it has one."""
    pending = []
    for out in outputs:
        key = out.key.encode() if out.key is not None else None
        headers = []
        if isinstance(out.message, Envelope):
            headers.append((REQUEST_ID_HEADER, out.message.request.request_id.encode()))
        if out.traceparent is not None:
            headers.append((TRACEPARENT_HEADER, out.traceparent.encode()))
        pending.append(
            await producer.send(out.topic, encode(out.message), key=key, headers=headers or None)
        )
    if pending:
        await asyncio.gather(*pending)
