"""Generated and mutated records for ``wrp.requests``: what a careless or hostile producer may
publish straight onto the topic.

Every record starts from a valid request of its own (a unique ``request_id``, a varied body: turns,
system prompts, tools, images, PII, odd unicode) and is then sent as it is or mutated: truncated,
bit-flipped, a field given the wrong type, a field blown up past the size limit, a ``reply_to``
from every class (the responses topic, an existing or missing prefixed topic, a pipeline topic,
garbage), a wrong ``schema_version``, unknown fields, sections a request must not carry, a hop
count past the budget, or not JSON at all.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

#: A prefixed reply topic the drill creates, and names that must be refused.
REPLY_TOPIC = "wrp.replies.drill"
REPLY_TO_VARIANTS: tuple[Any, ...] = (
    "wrp.responses",
    REPLY_TOPIC,
    "wrp.replies.never-created",
    "wrp.requests",
    "wrp.signals",
    "wrp.screened",
    "wrp.routed",
    "wrp.outcomes",
    "wrp.feedback",
    "wrp.dlq",
    "wrp.router-state",
    "no.such.topic",
    "",
    "bad topic name",
    "x" * 300,
    7,
    None,
    ["wrp.responses"],
)
ODD_TEXT = (
    "\u202eRTL override\u202c and zero\u200bwidth\u200djoiners",
    "emoji 👩🏽‍💻🧪 and CJK 漢字かなカナ and Thai ภาษาไทย",
    "NUL \u0000 and controls \u0007\u001b[31m",
    "combining a\u0301\u0302\u0303\u0304 marks" * 20,
    "\ud83d lone high surrogate in a JSON escape",
    "math letters "
    + "".join(map(chr, range(0x1D538, 0x1D548)))
    + " and fullwidth "
    + "".join(map(chr, range(0xFF21, 0xFF2A))),
)
#: Raw PII values planted in prompts (the PII drill scans the store for them too).
PII_VALUES = {
    "EMAIL_ADDRESS": "fuzz.victim@example.org",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "SSN 219-09-9999",
    "PHONE_NUMBER": "+1 415 555 0134",
}
TOPICS = [
    "Explain how a hash map handles collisions.",
    "Write a haiku about Kafka partitions.",
    "What is 17 * 23? Show your work.",
    "Summarise the causes of the French Revolution in three sentences.",
    "Translate 'good morning' into German and Japanese.",
]


@dataclass(frozen=True)
class FuzzRecord:
    raw: bytes
    kind: str  # what was done to it, for the report


def base_request(rng: random.Random, request_id: str, tenant: str) -> dict[str, Any]:
    """A valid envelope as JSON data, varied in shape."""
    text = rng.choice(TOPICS)
    shape = rng.randrange(6)
    if shape == 1:
        text = f"{text} {rng.choice(ODD_TEXT)}"
    elif shape == 2:
        entity = rng.choice(list(PII_VALUES))
        text = f"{text} Contact me at {PII_VALUES[entity]}."
    messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    if shape == 3:
        messages = [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            *messages,
        ]
    body: dict[str, Any] = {"model": "auto", "messages": messages}
    if shape == 4:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": {"type": "object"}},
            }
        ]
    if shape == 5:
        messages[-1]["content"] = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": "data:,"}},
        ]
    if rng.random() < 0.3:
        body["max_tokens"] = rng.randint(1, 64)
    request: dict[str, Any] = {"request_id": request_id, "tenant": tenant, "body": body}
    if rng.random() < 0.3:
        request["session_id"] = f"{request_id}-s{rng.randrange(5)}"
    return {"schema_version": 1, "request": request}


def _paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``data``."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


def _set(data: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def _flip_bits(raw: bytes, rng: random.Random) -> bytes:
    flipped = bytearray(raw)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(flipped))
        flipped[i] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def mutate(data: dict[str, Any], rng: random.Random, limit: int) -> FuzzRecord:
    """One record from a valid envelope: sent as is, or mutated one way."""
    kind = rng.choice(
        [
            "valid",
            "valid",
            "truncated",
            "bit_flips",
            "wrong_type",
            "huge_field",
            "reply_to",
            "reply_to",
            "schema_version",
            "unknown_field",
            "missing_field",
            "carried_section",
            "hops",
            "not_json",
        ]
    )
    request = data["request"]
    if kind == "reply_to":
        request["reply_to"] = rng.choice(REPLY_TO_VARIANTS)
    elif kind == "schema_version":
        data["schema_version"] = rng.choice([0, 2, "1", None, 1.5])
    elif kind == "unknown_field":
        where = rng.choice([data, request, request["body"]])
        where[rng.choice(["surprise", "__proto__", "model_config"])] = {"x": 1}
    elif kind == "missing_field":
        target = rng.choice(["messages", "request", "body_empty"])
        if target == "messages":
            request["body"].pop("messages")
        elif target == "request":
            data.pop("request")
        else:
            request["body"]["messages"] = []
    elif kind == "carried_section":
        section = rng.choice(["signals", "safety", "decision", "result", "outcome"])
        data[section] = (
            {"status": "ok", "stage": "dispatch", "response": {"choices": []}}
            if section == "result"
            else {}
        )
    elif kind == "hops":
        request["hops"] = rng.choice([10_000, -1, "many"])
    elif kind == "wrong_type":
        path = rng.choice(_paths(data))
        _set(data, path, rng.choice([None, 0, -1, 1e308, True, [], {}, "", ["x"], {"a": "b"}]))
    elif kind == "huge_field":
        size = rng.choice([limit // 2, limit + 1024])
        request["body"]["messages"][-1] = {"role": "user", "content": "z" * size}
    raw = json.dumps(data, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if kind == "truncated":
        raw = raw[: rng.randrange(1, len(raw))]
    elif kind == "bit_flips":
        raw = _flip_bits(raw, rng)
    elif kind == "not_json":
        raw = rng.choice(
            [
                b"",
                b"{not json",
                b"[1, 2, 3]",
                b'"just a string"',
                b"null",
                b"[" * 5000 + b"]" * 5000,
                bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))),
                b"\xff\xfe" + raw,
            ]
        )
    return FuzzRecord(raw, kind)


def fuzz_records(count: int, seed: int, run: str, limit: int) -> list[FuzzRecord]:
    """``count`` records, reproducible from ``seed``; ids and tenants carry ``run``."""
    rng = random.Random(seed)
    return [
        mutate(base_request(rng, f"fz-{run}-{i}", f"fuzz-{run}"), rng, limit) for i in range(count)
    ]
