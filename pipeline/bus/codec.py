"""Bytes <-> contracts. JSON on the wire, validated on the way in."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from pipeline.envelope import Contract

T = TypeVar("T", bound=Contract)

#: The Kafka header naming the request a reply or stream record belongs to: a follower waiting
#: for some requests skips the others' records without decoding them.
REQUEST_ID_HEADER = "request_id"


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=False).encode()


def decode(raw: bytes | None, model: type[T]) -> T:
    """Parse ``raw`` as ``model``; raises pydantic.ValidationError on bad JSON or schema."""
    if raw is None:
        raise ValueError("message has no value (tombstone)")
    return model.model_validate_json(raw)
