"""One vLLM engine, modelled: the v1 scheduler's decisions, timed by the GPU roofline.

The engine is pure and deterministic and has no clock of its own. The caller (a discrete-event
loop, or the simulator's asyncio server) calls :meth:`Engine.step` at time ``now``, advances its
clock by the returned iteration's ``duration_s``, and only then treats the iteration's tokens,
first tokens, finishes and preemptions as happened. Requests added between steps join at the
next step.

Scheduling follows vLLM v1 (``vllm/v1/core/sched/scheduler.py``, FCFS policy):

- Running requests first, in admission order: each gets its remaining tokens up to the
  iteration's token budget (``max_num_batched_tokens``): one for a decode, the next chunk for a
  prompt still prefilling (chunked prefill).
- A running request that cannot get the KV block its next tokens need preempts the most recently
  admitted running request (recompute mode: its blocks are freed, it goes back to the front of
  the queue with nothing computed). If it is the last one, it preempts itself.
- If nothing was preempted, waiting requests are admitted in FIFO order while the budget,
  ``max_num_seqs`` and free blocks allow; the first that does not fit stops admission.
- Prefix cache: every full block of a sequence is cached under its chained hash (prompt blocks
  from :mod:`pipeline.pool.blocks`; later blocks hold this request's own output, keyed by
  request and position). On admission the longest cached run of leading blocks counts as
  computed, keeping at least the last token to compute. Cached blocks are shared by reference
  count; a freed block stays cached and is evicted, least recently freed first (a request's
  tail blocks first), only when a new block is needed.
- A request's token is sampled by the iteration that computes its last pending token, so its
  first token comes out of the iteration that completes its prefill; it finishes with its
  ``output_tokens``-th token. A preempted request recomputes prompt plus output so far, then
  carries on from its next token.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from pipeline.pool.blocks import BLOCK_SIZE
from pipeline.pool.gpu import GpuProfile, ModelSpec, iteration_s, kv_blocks

#: A cached block's identity: a prompt block hash, or (request id, position) for output blocks.
BlockKey = int | tuple[str, int]


@dataclass(frozen=True)
class EngineConfig:
    """vLLM's engine arguments that shape scheduling; ``kv_blocks`` overrides the cache size."""

    block_size: int = BLOCK_SIZE
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True
    kv_blocks: int | None = None


@dataclass
class SimRequest:
    """A request as the engine sees it.

    ``blocks``: chained hashes of the prompt's full blocks, at the engine's block size.
    ``prefilled``: the decode side of a disaggregated pool; the prompt's KV arrives computed
    from the prefill endpoint and the engine only decodes.
    """

    id: str
    prompt_tokens: int
    output_tokens: int
    blocks: tuple[int, ...]
    arrival_s: float
    prefilled: bool = False

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise ValueError(f"request {self.id}: prompt and output need at least one token")


@dataclass(frozen=True)
class Iteration:
    """One scheduler iteration; its events happen at ``start_s + duration_s``."""

    start_s: float
    duration_s: float
    batch_size: int
    prefill_tokens: int
    decode_tokens: int
    first_token: tuple[str, ...]
    tokens: tuple[tuple[str, int], ...]  # (request id, new tokens)
    finished: tuple[str, ...]
    preempted: tuple[str, ...]


class _Sequence:
    """A request's progress: KV computed, tokens sampled, blocks held."""

    __slots__ = ("computed", "held", "id", "keys", "length", "prompt", "remote", "request")

    def __init__(self, request: SimRequest) -> None:
        self.request = request
        self.id = request.id
        self.prompt = request.prompt_tokens
        self.length = request.prompt_tokens  # prompt + sampled tokens
        self.computed = 0  # tokens whose KV is computed
        self.held = 0  # block positions allocated
        self.keys: list[BlockKey] = []  # cached blocks held, positions 0..len-1
        self.remote = request.prefilled

    @property
    def out(self) -> int:
        return self.length - self.prompt

    def key(self, position: int) -> BlockKey:
        blocks = self.request.blocks
        return blocks[position] if position < len(blocks) else (self.id, position)


class Engine:
    """A vLLM engine serving ``model`` on ``model.tp`` GPUs of type ``gpu``."""

    def __init__(self, gpu: GpuProfile, model: ModelSpec, config: EngineConfig | None = None):
        self.gpu = gpu
        self.model = model
        self.config = config = config or EngineConfig()
        self.total_blocks = config.kv_blocks or kv_blocks(
            gpu, model, config.gpu_memory_utilization, config.block_size
        )
        if self.total_blocks < 1:
            raise ValueError(f"{model.name} leaves no KV cache on {model.tp} x {gpu.name}")
        if config.max_num_seqs < 1 or config.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be at least 1")
        self.running: list[_Sequence] = []
        self.waiting: deque[_Sequence] = deque()
        self._free = self.total_blocks  # blocks no running request holds (cached ones included)
        self._refs: dict[BlockKey, int] = {}  # cached block -> running requests holding it
        self._lru: OrderedDict[BlockKey, None] = OrderedDict()  # cached, unheld; oldest first
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.num_preemptions = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.finished_requests = 0
        self.energy_j = 0.0
        self.busy_s = 0.0

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks held by running requests (vLLM's ``kv_cache_usage_perc``)."""
        return 1.0 - self._free / self.total_blocks

    def add(self, request: SimRequest, now: float) -> None:
        """Queue a request that arrived by ``now``; it joins at the next step."""
        if request.arrival_s > now:
            raise ValueError(f"request {request.id} arrives at {request.arrival_s}, after {now}")
        size = request.prompt_tokens + request.output_tokens
        if -(-size // self.config.block_size) > self.total_blocks:
            raise ValueError(
                f"request {request.id}: {size} tokens exceed the KV cache "
                f"({self.total_blocks} blocks of {self.config.block_size})"
            )
        self.waiting.append(_Sequence(request))

    def step(self, now: float) -> Iteration:
        """Schedule and run one iteration starting at ``now``."""
        if not self.has_work:
            raise RuntimeError("the engine has no work; check has_work before step")
        scheduled, preempted = self._schedule()
        block_size = self.config.block_size
        caching = self.config.enable_prefix_caching
        prefill = decode = context = pairs = 0
        tokens: list[tuple[str, int]] = []
        first: list[str] = []
        finished: list[str] = []
        for seq, count in scheduled:
            start = seq.computed
            if count > 1 or (start < seq.prompt and not seq.remote):
                prefill += count
            else:
                decode += count
            seq.computed = end = start + count
            context += end
            pairs += count * start + count * (count + 1) // 2
            if caching and end // block_size > len(seq.keys):
                self._cache_full_blocks(seq)
            if end < seq.length:
                continue
            seq.length += 1
            tokens.append((seq.id, 1))
            if seq.out == 1:
                first.append(seq.id)
                self.prompt_tokens += seq.prompt
            if seq.out == seq.request.output_tokens:
                finished.append(seq.id)
                self._release(seq)
        if finished:
            done = set(finished)
            self.running = [s for s in self.running if s.id not in done]
            self.finished_requests += len(finished)
        duration = iteration_s(self.gpu, self.model, prefill, decode, context, pairs)
        self.generation_tokens += len(tokens)
        self.energy_j += self.gpu.power_w(prefill + decode) * duration * self.model.tp
        self.busy_s += duration
        return Iteration(
            start_s=now,
            duration_s=duration,
            batch_size=len(scheduled),
            prefill_tokens=prefill,
            decode_tokens=decode,
            first_token=tuple(first),
            tokens=tuple(tokens),
            finished=tuple(finished),
            preempted=tuple(preempted),
        )

    def _schedule(self) -> tuple[list[tuple[_Sequence, int]], list[str]]:
        """vLLM v1's FCFS schedule: (sequence, new tokens) pairs and the preempted ids."""
        block_size = self.config.block_size
        budget = self.config.max_num_batched_tokens
        running = self.running
        scheduled: list[tuple[_Sequence, int]] = []
        preempted: list[str] = []
        index = 0
        while index < len(running) and budget > 0:
            seq = running[index]
            count = min(seq.length - seq.computed, budget)
            need = -(-(seq.computed + count) // block_size) - seq.held
            while need > self._free and running[-1] is not seq:
                preempted.append(self._preempt(running.pop()))
            if need > self._free:
                preempted.append(self._preempt(running.pop()))
                break
            self._allocate(need)
            seq.held += need
            scheduled.append((seq, count))
            budget -= count
            index += 1
        if preempted:
            return scheduled, preempted
        while self.waiting and budget > 0 and len(running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            hits = self._cached_prefix(seq) if self.config.enable_prefix_caching else []
            computed = len(hits) * block_size
            if seq.remote:
                computed = max(computed, seq.prompt - 1)
            count = min(seq.length - computed, budget)
            need = -(-(computed + count) // block_size) - len(hits)
            revived = sum(1 for key in hits if self._refs[key] == 0)
            if need + revived > self._free:
                break
            for key in hits:
                if self._refs[key] == 0:
                    del self._lru[key]
                    self._free -= 1
                self._refs[key] += 1
            self._allocate(need)
            seq.keys, seq.held, seq.computed = hits, len(hits) + need, computed
            if self.config.enable_prefix_caching:
                self.prefix_queries += seq.length
                self.prefix_hits += len(hits) * block_size
            self.waiting.popleft()
            running.append(seq)
            scheduled.append((seq, count))
            budget -= count
        return scheduled, preempted

    def _cached_prefix(self, seq: _Sequence) -> list[BlockKey]:
        """The longest cached run of the sequence's leading blocks, short of its last token."""
        hits: list[BlockKey] = []
        for position in range((seq.length - 1) // self.config.block_size):
            key = seq.key(position)
            if key not in self._refs:
                break
            hits.append(key)
        return hits

    def _allocate(self, count: int) -> None:
        """Take ``count`` new blocks, evicting least recently freed cached blocks if needed."""
        for _ in range(count - (self._free - len(self._lru))):
            key, _ = self._lru.popitem(last=False)
            del self._refs[key]
        self._free -= count

    def _cache_full_blocks(self, seq: _Sequence) -> None:
        """Cache the sequence's newly filled blocks; a block cached already is shared instead."""
        for position in range(len(seq.keys), seq.computed // self.config.block_size):
            key = seq.key(position)
            refs = self._refs.get(key)
            if refs is None:
                self._refs[key] = 1
            else:
                if refs == 0:
                    del self._lru[key]
                else:
                    self._free += 1  # this sequence's own copy goes back to the pool
                self._refs[key] = refs + 1
            seq.keys.append(key)

    def _release(self, seq: _Sequence) -> None:
        """Free the sequence's blocks; cached ones join the LRU tail, last block first."""
        self._free += seq.held - len(seq.keys)
        for key in reversed(seq.keys):
            refs = self._refs[key] - 1
            self._refs[key] = refs
            if refs == 0:
                self._lru[key] = None
                self._free += 1
        seq.keys, seq.held = [], 0

    def _preempt(self, seq: _Sequence) -> str:
        self._release(seq)
        seq.computed = 0
        seq.remote = False
        self.waiting.appendleft(seq)
        self.num_preemptions += 1
        return seq.id
