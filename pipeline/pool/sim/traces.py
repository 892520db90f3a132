"""LLM serving traces as timed requests: Azure LLM inference 2023 (conversation, code) and
Mooncake FAST'25 (conversation), read in place from the shared data directory.

A trace gives arrival times and token counts, never text. :func:`synthesise_prompt` makes a
deterministic prompt of exactly the traced length (as :func:`blocks.estimate_tokens` counts it).
Mooncake requests carry ids of 512-token prefix blocks: the text of a block is a function of its
id, so requests that share leading ids share a text prefix and its block hashes. Azure requests
carry no such ids and no prefix sharing is assumed: each prompt is unique.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline import settings
from pipeline.envelope import ChatMessage, ChatRequest, RequestSection
from pipeline.pool.blocks import BLOCK_SIZE, expand_trace_blocks

#: Tokens per Mooncake ``hash_ids`` block.
MOONCAKE_BLOCK = 512
#: Leading Mooncake blocks every request shares (a system prompt): not part of a conversation.
MOONCAKE_SHARED_BLOCKS = 1
#: One-piece words (``blocks.PIECES``) that synthesised prompts are drawn from.
VOCABULARY = (
    "the of and to in is was for on that with as by at from his her they have this are "
    "not but had which one were all when there can more some time will would what about "
    "out up into them then only other new could over such first after these may also any "
    "where most well back way even because good through"
).split()


@dataclass(frozen=True)
class TraceRequest:
    """One traced request: when it arrives (seconds from the trace start) and its lengths."""

    trace: str
    index: int  # row in the trace file
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    trace_blocks: tuple[int, ...] = ()  # Mooncake block ids; empty when the trace has none
    trace_block_tokens: int = 0  # tokens per trace block (512 for Mooncake)

    @property
    def request_id(self) -> str:
        return f"{self.trace}-{self.index}"

    @property
    def session_key(self) -> int | None:
        """The first block after the shared system prompt: the turns of a conversation share it.

        Approximate: a conversation whose first turn ends inside that block changes it once."""
        if len(self.trace_blocks) > MOONCAKE_SHARED_BLOCKS:
            return self.trace_blocks[MOONCAKE_SHARED_BLOCKS]
        return None

    def segments(self) -> tuple[tuple[int, ...], int]:
        """Seeds of the prompt's segments and the tokens each spans: the trace blocks, or one
        request-unique seed over the whole prompt when the trace has none."""
        if self.trace_blocks:
            return self.trace_blocks, self.trace_block_tokens
        unique = hashlib.blake2b(self.request_id.encode(), digest_size=8).digest()
        span = -(-max(self.prompt_tokens, 1) // BLOCK_SIZE) * BLOCK_SIZE
        return (int.from_bytes(unique, "little"),), span


def engine_block_hashes(request: TraceRequest, block_size: int = BLOCK_SIZE) -> tuple[int, ...]:
    """Chained KV-block hashes of the request's prompt (shared only where trace blocks are)."""
    seeds, span = request.segments()
    return expand_trace_blocks(seeds, request.prompt_tokens, span, block_size)


def synthesise_prompt(request: TraceRequest) -> str:
    """Deterministic text of exactly ``prompt_tokens`` pieces; a segment's words depend only on
    its seed, and a partial last segment is a prefix of the full one."""
    seeds, span = request.segments()
    words: list[str] = []
    for i, seed in enumerate(seeds):
        count = min(span, request.prompt_tokens - i * span)
        words += random.Random(seed).choices(VOCABULARY, k=count)
    return " ".join(words)


def trace_request_section(
    request: TraceRequest, tenant: str = "default", model: str = "auto", run: str | None = None
) -> RequestSection:
    """The chat request for a traced one. ``run`` prefixes the request and session ids so that
    replaying a trace again is not taken for a retry of the earlier replay. It streams, as
    serving traffic does: a streamed call is the one whose time to first token is measured."""
    prefix = f"{run}-" if run else ""
    key = request.session_key
    return RequestSection(
        request_id=prefix + request.request_id,
        tenant=tenant,
        session_id=None if key is None else f"{prefix}{request.trace}-s{key}",
        body=ChatRequest(
            model=model,
            messages=[ChatMessage(role="user", content=synthesise_prompt(request))],
            max_tokens=request.output_tokens,
            stream=True,
            ignore_eos=True,  # vLLM: generate exactly the traced output length
        ),
    )


# --- loading ---------------------------------------------------------------------------------


def _read_azure(name: str, path: Path, limit: int | None) -> list[TraceRequest]:
    with path.open(newline="") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), limit))
    times = [datetime.fromisoformat(row["TIMESTAMP"]) for row in rows]
    return [
        TraceRequest(
            trace=name,
            index=i,
            arrival_s=(at - times[0]).total_seconds(),
            prompt_tokens=int(row["ContextTokens"]),
            output_tokens=int(row["GeneratedTokens"]),
        )
        for i, (row, at) in enumerate(zip(rows, times, strict=True))
    ]


def _read_mooncake(name: str, path: Path, limit: int | None) -> list[TraceRequest]:
    with path.open() as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, limit)]
    start = rows[0]["timestamp"] if rows else 0
    return [
        TraceRequest(
            trace=name,
            index=i,
            arrival_s=(row["timestamp"] - start) / 1000,
            prompt_tokens=row["input_length"],
            output_tokens=row["output_length"],
            trace_blocks=tuple(row["hash_ids"]),
            trace_block_tokens=MOONCAKE_BLOCK,
        )
        for i, row in enumerate(rows)
    ]


@dataclass(frozen=True)
class TraceSource:
    path: str  # relative to the shared data directory
    read: Callable[[str, Path, int | None], list[TraceRequest]]


TRACES: dict[str, TraceSource] = {
    "azure-conv": TraceSource("traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv", _read_azure),
    "azure-code": TraceSource("traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv", _read_azure),
    "mooncake": TraceSource("traces/mooncake_fast25/conversation_trace.jsonl", _read_mooncake),
}


class UnknownTrace(ValueError):
    pass


def load_trace(
    name: str, limit: int | None = None, data_dir: Path | None = None
) -> list[TraceRequest]:
    """The first ``limit`` requests (all when None) of trace ``name``, in arrival order.

    ``data_dir`` defaults to ``$WRP_DATA_DIR`` or ``../shared/data``; raises
    :class:`~pipeline.settings.DataMissing` naming the expected path when the file is absent."""
    if name not in TRACES:
        raise UnknownTrace(f"unknown trace {name!r}: choose one of {', '.join(TRACES)}")
    source = TRACES[name]
    path = (data_dir or settings.data_dir()) / source.path
    if not path.is_file():
        raise settings.DataMissing(
            f"trace {name!r} expects {path}: set {settings.DATA_ENV} to the shared data "
            "directory (see shared/data/README.md)"
        )
    return source.read(name, path, limit)


# --- time scaling and summary ----------------------------------------------------------------


def mean_rate(requests: Sequence[TraceRequest]) -> float:
    """Arrivals per second between the first and the last arrival (0 when undefined)."""
    if len(requests) < 2:
        return 0.0
    duration = requests[-1].arrival_s - requests[0].arrival_s
    return (len(requests) - 1) / duration if duration > 0 else 0.0


def rescale(
    requests: Sequence[TraceRequest], *, speed: float | None = None, rate_per_s: float | None = None
) -> list[TraceRequest]:
    """Compress time by ``speed`` (arrival / speed), or to a mean rate of ``rate_per_s``."""
    if (speed is None) == (rate_per_s is None):
        raise ValueError("give exactly one of speed and rate_per_s")
    if rate_per_s is not None:
        if rate_per_s <= 0 or mean_rate(requests) == 0:
            raise ValueError("rate targeting needs a positive rate and two distinct arrivals")
        speed = rate_per_s / mean_rate(requests)
    if speed is None or speed <= 0:
        raise ValueError(f"speed must be positive, not {speed}")
    return [replace(r, arrival_s=r.arrival_s / speed) for r in requests]


def reused_prompt_share(requests: Sequence[TraceRequest]) -> float:
    """Share of prompt tokens in trace blocks that an earlier request already had."""
    seen: set[int] = set()
    reused = 0
    for request in requests:
        for i, block in enumerate(request.trace_blocks):
            if block in seen:
                span = request.trace_block_tokens
                reused += min(span, request.prompt_tokens - i * span)
            seen.add(block)
    return reused / max(1, sum(r.prompt_tokens for r in requests))


@dataclass(frozen=True)
class TraceSummary:
    requests: int
    duration_s: float
    mean_rate: float
    prompt_tokens: tuple[float, float, float]  # mean, p50, p99
    output_tokens: tuple[float, float, float]
    reused_prompt_share: float

    def render(self) -> str:
        def spread(values: tuple[float, float, float]) -> str:
            return f"mean {values[0]:.0f}, p50 {values[1]:.0f}, p99 {values[2]:.0f}"

        return (
            f"{self.requests} requests over {self.duration_s:.1f} s ({self.mean_rate:.2f}/s)\n"
            f"prompt tokens {spread(self.prompt_tokens)}\n"
            f"output tokens {spread(self.output_tokens)}\n"
            f"prompt tokens in blocks seen before {self.reused_prompt_share:.1%}"
        )


def summarise(requests: Sequence[TraceRequest]) -> TraceSummary:
    def spread(values: list[int]) -> tuple[float, float, float]:
        array = np.asarray(values or [0], dtype=float)
        p50, p99 = np.percentile(array, [50, 99])
        return float(array.mean()), float(p50), float(p99)

    return TraceSummary(
        requests=len(requests),
        duration_s=requests[-1].arrival_s - requests[0].arrival_s if requests else 0.0,
        mean_rate=mean_rate(requests),
        prompt_tokens=spread([r.prompt_tokens for r in requests]),
        output_tokens=spread([r.output_tokens for r in requests]),
        reused_prompt_share=reused_prompt_share(requests),
    )
