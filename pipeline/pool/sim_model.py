"""The simulator's engine model: a vLLM-like server with a concurrency limit and a FIFO queue.

Service time of a request = prefill (per prompt token) + decode (per output token). At most
``max_concurrency`` requests run at once; the rest wait in arrival order. Output length is
``max_tokens`` if the answer would be longer, else a deterministic function of the prompt, so a
replay gets the same answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass

from pipeline.policy import SimulatorProfile

#: Word and punctuation pieces: a lower bound of what a subword tokenizer counts.
PIECES = re.compile(r"\w+|[^\w\s]")
MIN_OUTPUT_TOKENS, OUTPUT_TOKEN_SPREAD = 16, 176


def estimate_tokens(text: str) -> int:
    return max(1, len(PIECES.findall(text)))


def natural_output_tokens(prompt: str) -> int:
    digest = hashlib.blake2b(prompt.encode(), digest_size=4).digest()
    return MIN_OUTPUT_TOKENS + int.from_bytes(digest, "little") % OUTPUT_TOKEN_SPREAD


@dataclass(frozen=True)
class Timing:
    queue_s: float
    ttft_s: float
    total_s: float


class EngineModel:
    """Admission and timing of one simulated endpoint."""

    def __init__(self, profile: SimulatorProfile) -> None:
        self.profile = profile
        self._slots = asyncio.Semaphore(profile.max_concurrency)
        self.running = 0
        self.waiting = 0

    def prefill_s(self, prompt_tokens: int) -> float:
        return self.profile.prefill_ms_per_token * prompt_tokens / 1000

    def decode_s(self, output_tokens: int) -> float:
        return self.profile.decode_ms_per_token * output_tokens / 1000

    async def admit(self) -> float:
        """Wait for a free slot; returns the seconds spent queued. Pair with :meth:`finish`."""
        arrived = time.perf_counter()
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        return time.perf_counter() - arrived

    def finish(self) -> None:
        self.running -= 1
        self._slots.release()
