"""GPU and model profiles, and the roofline that times one vLLM engine iteration.

An iteration runs every linear layer once over the batch's new tokens and attention over their
context; it takes ``overhead + max(compute, memory)`` on ``tp`` tensor-parallel GPUs:

- compute = (2 * params * tokens + 4 * layers * heads * head_dim * attention_pairs)
  / (tp * TFLOPS * MFU)
- memory = (weight bytes + KV bytes read) / (tp * bandwidth * MBU)
- overhead = scheduler, sampling and kernel launches (CUDA graphs), plus two all-reduces per
  layer when ``tp > 1``.

Calibration (Llama-3.1-8B, bf16, one GPU):

- A100 40GB, vLLM 0.23, 1024-token prompts, one request at a time: ~75 tokens/s decode
  (13.3 ms per token, "77% of the memory-bandwidth ceiling"; johnmusgrave.com/p/vllm-throughput-
  latency-sweep-on). MBU 0.85 with 1.2 ms overhead reproduces it: 13.4 ms at 1.555 TB/s.
- The same constants give 6.9 ms on H100 SXM, 10.6 ms on A100 80GB and 33.0 ms on A10G per
  decode token of a lone request with ~1k tokens of context, inside the ~6-8, ~10-13 and
  ~25-35 ms usually reported for vLLM (ranges, not one cited measurement). The A10G is bound
  by its 600 GB/s: 16 GB of weights take 26.8 ms at peak bandwidth.
- MFU 0.5 for prefill: a 2048-token chunk runs at ~9.3k prompt tokens/s on A100 (the ~10k/s
  usually quoted for 7-8B models), ~29k/s on H100 and ~2.1k/s on A10G. This is the least
  anchored constant: no single published prefill measurement was matched.

Llama-3.1-70B at tp=4 comes out at 14.9 ms (H100) and 22.9 ms (A100) per lone decode token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.pool.blocks import BLOCK_SIZE

#: Fraction of peak tensor throughput a prefill reaches (see the module docstring).
MFU = 0.5
#: Fraction of peak memory bandwidth a decode step reaches.
MBU = 0.85
#: Fixed time per iteration: scheduling, sampling, launches.
STEP_OVERHEAD_S = 1.2e-3
#: One small all-reduce inside an NVLink node (vLLM's custom all-reduce is ~5-10 us).
ALLREDUCE_S = 8e-6
#: Memory vLLM keeps out of the KV cache per GPU besides weights: activations at the token
#: budget, CUDA graphs, the sampler's logits, allocator and NCCL buffers.
ACTIVATION_RESERVE_GIB = 2.0
#: Batch at which power has covered 1/(1+1.8) = 36% of the way from idle to max (see power_w).
POWER_SQRT_HALF = 1.8
GIB = 1024**3


@dataclass(frozen=True)
class GpuProfile:
    """One GPU: datasheet peaks, power envelope and on-demand price per GPU-hour."""

    name: str
    bf16_tflops: float  # dense, no sparsity
    bandwidth_gbs: float
    memory_gib: float
    idle_w: float  # powered, model loaded, no kernels running
    max_w: float  # board power limit (TDP)
    usd_per_hour: float
    sources: str

    def power_w(self, batch: float) -> float:
        """Board power while an iteration runs ``batch`` token rows (decoding sequences, or
        prompt tokens of a prefill chunk): idle at 0, rising as sqrt(batch), saturating at max.

        Shape: Splitwise (Patel et al., ISCA'24) and "Characterizing Power Management
        Opportunities for LLMs in the Cloud" (Patel et al., ASPLOS'24) report prompt phases near
        TDP and token phases well below it, growing with batch. Scale: ML.ENERGY v3.0 (H100 SXM,
        vLLM) ~300 W at batch 1 and ~600 W at batch 128, as quoted by vllm-sr-sim's power-model
        notes; with idle 80 W and TDP 700 W this curve gives 301 W and 615 W, and ~675 W for a
        2048-token prefill chunk. The A100 and A10G use the same fractions (a projection).
        """
        root = math.sqrt(max(0.0, batch))
        return self.idle_w + (self.max_w - self.idle_w) * root / (root + POWER_SQRT_HALF)


@dataclass(frozen=True)
class ModelSpec:
    """A dense decoder served with tensor parallelism over ``tp`` GPUs per endpoint."""

    name: str
    params_b: float
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2
    tp: int = 1

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


_PRICES = (
    "AWS EC2 on-demand us-east-1 per GPU-hour: g5.xlarge $1.006 (1 A10G), p4de.24xlarge "
    "$27.447/8 (A100 80GB), p5.48xlarge $55.04/8 (H100), as tabulated in "
    "github.com/datareceipts/data-receipts 109-gpu-pricing/hyperscalers.json (read 2026-11-09)"
)
GPUS: dict[str, GpuProfile] = {
    "A10G": GpuProfile(
        "A10G",
        bf16_tflops=70.0,
        bandwidth_gbs=600.0,
        memory_gib=22.49,
        idle_w=40.0,
        max_w=300.0,
        usd_per_hour=1.006,
        sources="Baseten 'NVIDIA A10 vs A10G for ML model inference' (A10G: 24 GB GDDR6, 600 "
        "GB/s, 70 TF bf16 tensor vs the A10's 125); nvidia-smi on g5: 23028 MiB, 300 W power "
        "cap, 30-60 W idle in P0; " + _PRICES,
    ),
    "A100": GpuProfile(
        "A100",
        bf16_tflops=312.0,
        bandwidth_gbs=2039.0,
        memory_gib=80.0,
        idle_w=60.0,
        max_w=400.0,
        usd_per_hour=27.447 / 8,
        sources="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM: 312 TF bf16 dense, 2,039 GB/s "
        "HBM2e, 400 W); idle is a typical P0 reading; " + _PRICES,
    ),
    "H100": GpuProfile(
        "H100",
        bf16_tflops=989.0,
        bandwidth_gbs=3350.0,
        memory_gib=80.0,
        idle_w=80.0,
        max_w=700.0,
        usd_per_hour=55.04 / 8,
        sources="NVIDIA H100 Tensor Core GPU datasheet (SXM: 989 TF bf16 dense, 1,979 with "
        "sparsity, 3.35 TB/s HBM3, up to 700 W); idle is a typical P0 reading; " + _PRICES,
    ),
}

#: Llama 3.1 architectures from their Hugging Face config.json files.
MODELS: dict[str, ModelSpec] = {
    "llama-3.1-8b": ModelSpec(
        "llama-3.1-8b", params_b=8.03, layers=32, heads=32, kv_heads=8, head_dim=128
    ),
    "llama-3.1-70b": ModelSpec(
        "llama-3.1-70b", params_b=70.6, layers=80, heads=64, kv_heads=8, head_dim=128, tp=4
    ),
}


def iteration_s(
    gpu: GpuProfile,
    model: ModelSpec,
    prefill_tokens: int,
    decode_seqs: int,
    context_tokens: int = 0,
    attention_pairs: int = 0,
) -> float:
    """Seconds of one iteration computing ``prefill_tokens`` prompt tokens and one token for
    each of ``decode_seqs`` sequences.

    ``context_tokens``: KV tokens the batch's attention reads (every scheduled sequence's length).
    ``attention_pairs``: (query, key) pairs attended; a decode token attends its whole context,
    a chunk of ``c`` tokens after ``p`` computed ones ``c * p + c * (c + 1) / 2``.
    """
    flops = (
        2 * model.params_b * 1e9 * (prefill_tokens + decode_seqs)
        + 4 * model.layers * model.heads * model.head_dim * attention_pairs
    )
    compute = flops / (model.tp * gpu.bf16_tflops * 1e12 * MFU)
    read = model.weight_bytes + context_tokens * model.kv_bytes_per_token
    memory = read / (model.tp * gpu.bandwidth_gbs * 1e9 * MBU)
    overhead = STEP_OVERHEAD_S + (2 * model.layers * ALLREDUCE_S if model.tp > 1 else 0.0)
    return overhead + max(compute, memory)


def kv_blocks(
    gpu: GpuProfile,
    model: ModelSpec,
    gpu_memory_utilization: float = 0.9,
    block_size: int = BLOCK_SIZE,
) -> int:
    """KV cache blocks vLLM would allocate: what ``gpu_memory_utilization`` of the endpoint's
    memory leaves after weights and the activation reserve (0 when the model does not fit)."""
    budget = model.tp * (gpu.memory_gib * gpu_memory_utilization - ACTIVATION_RESERVE_GIB) * GIB
    return max(0, int((budget - model.weight_bytes) // (block_size * model.kv_bytes_per_token)))
