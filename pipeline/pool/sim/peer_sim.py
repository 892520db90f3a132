"""Adapter to the peer fleet simulator vllm-sr-sim, for side-by-side fleet figures.

vllm-sr-sim (PyPI ``vllm-sr-sim``, import name ``fleet_sim``, Apache-2.0, numpy + scipy, CPU) is
the fleet simulator of the vLLM Semantic Router project. This module runs its models on *our*
workload (arrays of prompt and output tokens plus a Poisson arrival rate), for one homogeneous
pool of ``n_gpus`` A10G, A100 or H100 "GPUs", and returns its figures in small dataclasses:

- :func:`analytical`: its M/G/c model evaluated at a given fleet size, on the real
  (prompt, output) pairs (``analytical.calibrate`` does the same on CDF samples split 80/20);
- :func:`optimize`: its own sizing path, ``FleetOptimizer.sweep_analytical`` (plus, optionally,
  the slot-level DES check inside ``FleetOptimizer.optimize``) on the workload's total-token CDF;
- :func:`simulate`: its request-level simulator (``Fleet`` / ``Pool`` / ``Instance``).

What the figures mean (vllm-sr-sim's definitions, version 0.1.0.dev20260713123629)
------------------------------------------------------------------------------------
A "GPU" is one instance of a *profile*; its price is ``cost_per_hr`` per instance.

- Slots: ``n_slots(max_ctx) = min(max_slots * calibration_ctx // max_ctx,
  total_kv_blks // ceil(max_ctx / blk_size))``: every slot reserves a whole ``max_ctx`` of KV.
  A100 at ``max_ctx`` 8192: 128 slots, at 16384: 64 (so ``max_ctx`` is a first-order knob).
- Iteration time: ``iter_latency(n, L) = W + H * (L / calibration_ctx) * n`` (memory-bound;
  ``L`` is the mean total length of the batch, ``n`` the sequences in flight).
- Service time of one request (a slot is busy this long):
  ``S = (ceil(l_in / chunk) + l_out) * iter_latency(n_slots, l_in + l_out)``, i.e. every
  prefill chunk costs one decode iteration, at a full batch of requests as long as this one.
- Per-GPU rate ``mu_gpu = n_slots / E[S]``; ``cv2 = Var[S] / E[S]^2``.
- ``p99_wait``: Kimura's M/G/c approximation with ``c = n_gpus * n_slots`` servers (every KV slot
  a server) of rate ``mu_gpu / n_slots``: ``P(W > t) = C(c, a) exp(-2 (c mu - lam) t / (1 + cv2))``
  with Erlang C; 0 when ``P(W > 0) <= 1 %``, infinite when ``rho >= 1``. For ``cv2 = 1`` it is
  the exact M/M/c tail.
- "P99 TTFT" (the analytical one): ``p99_wait`` + the *mean* prefill time, where prefill is
  ``ceil(l_in / chunk) * iter_latency(1)`` (a batch of one at ``calibration_ctx``), not the
  full-batch iteration the service time uses.
- Minimum GPUs (``min_gpus_analytical``): the least ``n >= ceil(lam / mu_gpu) + 1`` with
  ``p99_wait <= slo``, and at least ``ceil(lam / (0.85 mu_gpu))`` (utilisation cap 0.85). The SLO
  is checked on the wait alone; the sweep reports p99 TTFT (wait + mean prefill) beside it.
- ``optimize`` works on the CDF of total tokens and splits every sampled length 80 % prompt,
  20 % output (the Azure 2023 trace is 90 % prompt by tokens, conversation 85 %).
- Request-level simulator: per request, TTFT = slot wait + ``ceil(l_in / chunk)`` iterations at
  the instance's current batch; ``physical_end`` = start + full service time (e2e latency, TPOT);
  but the slot is released at start + ``S_full / n_slots`` (see the claims below). KV is paged:
  a request holds ``ceil((l_in + l_out) / blk_size)`` blocks from admission, and the longest
  running request is preempted when the budget would overflow. Its "utilisation" is the fraction
  of time an instance had at least one request, not ``lam / (n mu)``.

Checked claims (DESIGN.md section 4; Azure 2023 conversation pairs, A100, ``max_ctx`` 16384)
-------------------------------------------------------------------------------------------
- The analytical sizing is consistent: per-GPU capacity ``n_slots / E[S]`` (64 / 3.24 s = 19.8
  requests/s), one server per slot held for the whole ``S``. Kimura equals the exact M/M/c p99
  wait for ``cv2 = 1`` (e.g. c=64, lam=60, mu=1: 0.9814 s both); against a slot-level DES on the
  same service times it gives P(wait) 0.170 vs 0.175 and p99 wait 0.87 vs 0.99 s (1 GPU, rho
  0.86), 1.20 vs 1.20 s (2 GPUs, rho 0.94).
- The request-level ``Instance`` frees a slot ``S_full / n_slots`` after admission while the
  request physically runs ``S``: one A100 completes 1264 requests/s at saturation, 64x (= its
  slot count) the 19.8/s of the analytical model, and at 200 requests/s (rho 10 by the
  analytical model) its p99 TTFT is 87 ms with no queueing.
- Its default balancer (``lb_strategy="least_queue"``) picks ``min(instances, key=queue_depth)``;
  queues are empty while slots are free, so ties go to instance 0 and every request lands there:
  4 GPUs at 60 requests/s served (20000, 0, 0, 0); ``round_robin`` gives (5000, 5000, 5000, 5000),
  ``least_loaded`` (6841, 5462, 4366, 3331).
- Also: the 500 ms SLO never binds at these sizes (p99 wait is 0 at the chosen fleet); the
  fleet is set by the 0.85 utilisation cap and by the search starting at ``ceil(lam / mu) + 1``
  (never fewer than 2 GPUs). ``optimize``'s 80/20 split makes E[S] 5.52 s (cv2 3.8) instead of
  3.24 s (cv2 0.7) on the real pairs, so it asks for ~1.75x the GPUs (21 vs 12 at 200/s).

Use :func:`analytical` / :func:`optimize` for comparisons; :func:`simulate` is here to show how
far its request-level numbers are from them.

The model and GPU it assumes
----------------------------
The shipped profiles (``A10G``, ``A100_80GB``, ``H100_80GB``; :data:`PROFILE_CONSTANTS`) are
hand-set ``ManualProfile``s documented as "Llama-3-70B calibration, 8-GPU TP" (A10G: "7B-class,
single GPU") but priced per single GPU ($1.01, $2.21, $4.02 an hour). Their prefill falls back to
the decode iteration (no compute bound). The constants fit no one model:

- A100: W 8 ms, H 0.65 ms per sequence at 8192 tokens, chunk 512, 65,536 blocks of 16 = 1,048,576
  KV tokens, 128 slots at 8192. The package's own roofline (``ProfileBuilder``) gives, for
  Llama-3.1-70B TP8 on A100 SXM, W 10.9 ms and H 0.21 ms at 8192 tokens; for Llama-3.1-8B on one
  A100, W 9.3 ms and H 0.66 ms. So W and H look like an 8B model on one GPU, while the KV budget
  looks like 70B on eight (1.05 M tokens x 128 KiB = 137 GB for an 8B GQA model, more than 80 GB;
  x 320 KiB = 344 GB across 8 GPUs for 70B).
- H100: W 4 ms, H 0.32 ms, chunk 1024, the same KV budget, 256 "max_slots" (but the KV limit
  keeps it at 128 slots at 8192 tokens, like the A100).
- A10G: W 12 ms, H 0.9 ms, chunk 256, 524,288 KV tokens (64 GiB for a GQA 8B model on a 24 GB
  card), 64 slots at 8192.

For a like-for-like comparison either configure our engine with those effective constants
(iteration = W + H * (L / 8192) * n, chunk, KV tokens, slots), or pass ``model=`` (a ``fleet_sim``
catalog name such as ``"llama-3.1-8b"``) and ``tp=``: the profile is then derived from the
``HardwareSpec`` (A100 SXM 80 GiB: 2.039 TB/s, 312 TFLOPS fp16, $2.21/h; H100 SXM 80 GiB:
3.35 TB/s, 989 TFLOPS, $4.02/h; 0.8 of peak bandwidth, 3 us per layer, 0.9 memory utilisation,
chunk 512, H calibrated at 2048 tokens) and the model's architecture, which our roofline can take
as they are. Two caveats of that path: its KV budget divides one GPU's free memory by the whole
model's KV bytes per token (no ``/ tp``), so at ``tp > 1`` it holds ``tp`` times too few tokens
(Llama-3.1-70B TP8: 181,648); and the hardware catalog has no A10G (its ``"a10g"`` is the L40S),
so derived profiles exist for A100 and H100 only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fleet_sim import (
    A10G,
    A100_80GB,
    A100_SXM,
    H100_80GB,
    H100_SXM,
    ComputedProfile,
    Fleet,
    FleetConfig,
    FleetOptimizer,
    ManualProfile,
    PoolConfig,
    ProfileBuilder,
    Request,
    ServingConfig,
    get_model,
)
from fleet_sim.optimizer import analytical as mgc

GpuName = Literal["A10G", "A100", "H100"]
Balancer = Literal["least_queue", "round_robin", "least_loaded"]
Profile = ManualProfile | ComputedProfile

_MANUAL: dict[str, ManualProfile] = {"A10G": A10G, "A100": A100_80GB, "H100": H100_80GB}
_HARDWARE = {"A100": A100_SXM, "H100": H100_SXM}
#: vllm-sr-sim's utilisation cap in ``min_gpus_analytical``.
RHO_MAX = 0.85


@dataclass(frozen=True)
class ProfileConstants:
    """The constants of one vllm-sr-sim GPU profile (seconds, tokens, dollars)."""

    name: str
    base_iteration_s: float  # W
    per_sequence_s: float  # H, at calibration_ctx tokens per sequence
    calibration_ctx: int
    prefill_chunk: int
    kv_block_size: int
    kv_blocks: int
    max_slots: int  # at calibration_ctx; 0 = limited by the KV budget only
    cost_per_hour: float

    @property
    def kv_tokens(self) -> int:
        return self.kv_blocks * self.kv_block_size


def _constants(profile: Profile) -> ProfileConstants:
    return ProfileConstants(
        name=profile.name,
        base_iteration_s=profile.W,
        per_sequence_s=profile.H,
        calibration_ctx=profile.calibration_ctx,
        prefill_chunk=profile.chunk,
        kv_block_size=profile.blk_size,
        kv_blocks=profile.total_kv_blks,
        max_slots=profile.max_slots,
        cost_per_hour=profile.cost_per_hr,
    )


#: The shipped profiles, by our GPU name.
PROFILE_CONSTANTS: dict[str, ProfileConstants] = {k: _constants(p) for k, p in _MANUAL.items()}


def gpu_profile(gpu: GpuName, model: str | None = None, tp: int = 1) -> Profile:
    """vllm-sr-sim's profile for ``gpu``: the shipped one, or one derived for ``model`` at ``tp``.

    ``model`` is a ``fleet_sim`` catalog name (``fleet_sim.list_models()``), e.g. "llama-3.1-8b".
    A derived profile costs ``tp`` GPUs an hour and is limited by its KV budget only.
    """
    if model is None:
        return _MANUAL[gpu]
    if gpu not in _HARDWARE:
        raise ValueError(f"vllm-sr-sim has no {gpu} hardware spec (its 'a10g' is an L40S)")
    return ProfileBuilder().build(
        hw=_HARDWARE[gpu], model=get_model(model), cfg=ServingConfig(tp=tp)
    )


def profile_constants(gpu: GpuName, model: str | None = None, tp: int = 1) -> ProfileConstants:
    return _constants(gpu_profile(gpu, model, tp))


def default_max_ctx(prompt_tokens: Sequence[int], output_tokens: Sequence[int]) -> int:
    """The smallest power of two (at least 2048) that holds the longest request."""
    longest = int(_pairs(prompt_tokens, output_tokens).sum(axis=1).max())
    return max(2048, 1 << max(0, longest - 1).bit_length())


def _pairs(
    prompt_tokens: Sequence[int], output_tokens: Sequence[int], max_ctx: int | None = None
) -> np.ndarray:
    pairs = np.column_stack([np.asarray(prompt_tokens), np.asarray(output_tokens)]).astype(int)
    if len(pairs) == 0 or pairs.min() < 0:
        raise ValueError("need at least one request and no negative token counts")
    pairs = np.maximum(pairs, 1)  # vllm-sr-sim never has an empty prompt or output
    longest = int(pairs.sum(axis=1).max())
    if max_ctx is not None and longest > max_ctx:
        raise ValueError(f"a request of {longest} tokens does not fit max_ctx={max_ctx}")
    return pairs


@dataclass(frozen=True)
class PeerAnalytical:
    """vllm-sr-sim's M/G/c figures for one pool of ``n_gpus`` at one arrival rate."""

    gpu: str
    n_gpus: int
    arrival_rate: float
    max_ctx: int
    slots_per_gpu: int
    mean_service_s: float  # E[S]: how long a request holds its slot
    service_cv2: float
    gpu_rate: float  # requests/s one GPU completes at full load: slots / E[S]
    utilisation: float  # lam / (n_gpus * gpu_rate); >= 1 means unstable
    p_wait: float  # Erlang C: probability a request waits for a slot
    p99_wait_s: float  # Kimura; inf when unstable
    mean_prefill_s: float  # ceil(l_in / chunk) * iter_latency(1), averaged
    p99_ttft_s: float  # its "P99 TTFT": p99_wait + mean prefill
    slo_ttft_s: float
    min_gpus: int  # min_gpus_analytical: p99 wait <= slo and utilisation <= 0.85
    cost_per_hour: float  # n_gpus * profile cost
    min_gpus_cost_per_hour: float


def analytical(
    prompt_tokens: Sequence[int],
    output_tokens: Sequence[int],
    arrival_rate: float,
    gpu: GpuName,
    n_gpus: int,
    *,
    slo_ttft_s: float = 0.5,
    max_ctx: int | None = None,
    model: str | None = None,
    tp: int = 1,
) -> PeerAnalytical:
    """Evaluate vllm-sr-sim's M/G/c model on the real (prompt, output) pairs."""
    profile = gpu_profile(gpu, model, tp)
    ctx = max_ctx or default_max_ctx(prompt_tokens, output_tokens)
    pairs = _pairs(prompt_tokens, output_tokens, ctx)
    slots = profile.n_slots(ctx)
    service = np.array([profile.service_time(int(i), int(o), ctx) for i, o in pairs])
    single = profile.iter_latency(1)
    prefill = np.ceil(pairs[:, 0] / profile.chunk) * single
    mean_s = float(service.mean())
    cv2 = max(0.01, float(service.var()) / mean_s**2)  # calibrate's floor
    gpu_rate = slots / mean_s
    servers, slot_rate = n_gpus * slots, 1 / mean_s
    p99_wait = mgc.p99_wait(servers, arrival_rate, slot_rate, cv2)
    utilisation = arrival_rate / (n_gpus * gpu_rate)
    p_wait = mgc.erlang_c(servers, arrival_rate / slot_rate) if utilisation < 1 else 1.0
    need = mgc.min_gpus_analytical(arrival_rate, gpu_rate, slo_ttft_s, cv2, RHO_MAX, slots)
    return PeerAnalytical(
        gpu=profile.name,
        n_gpus=n_gpus,
        arrival_rate=arrival_rate,
        max_ctx=ctx,
        slots_per_gpu=slots,
        mean_service_s=mean_s,
        service_cv2=cv2,
        gpu_rate=gpu_rate,
        utilisation=utilisation,
        p_wait=p_wait,
        p99_wait_s=p99_wait,
        mean_prefill_s=float(prefill.mean()),
        p99_ttft_s=p99_wait + float(prefill.mean()),
        slo_ttft_s=slo_ttft_s,
        min_gpus=need,
        cost_per_hour=n_gpus * profile.cost_per_hr,
        min_gpus_cost_per_hour=need * profile.cost_per_hr,
    )


def total_token_cdf(
    prompt_tokens: Sequence[int], output_tokens: Sequence[int], points: int = 200
) -> list[tuple[int, float]]:
    """The workload as vllm-sr-sim takes it: a CDF of prompt + output tokens."""
    totals = np.sort(_pairs(prompt_tokens, output_tokens).sum(axis=1))
    n = len(totals)
    thresholds = np.unique(totals[[*range(0, n, max(1, n // points)), n - 1]])
    reach = np.searchsorted(totals, thresholds, side="right") / n
    return [(int(t), float(f)) for t, f in zip(thresholds, reach, strict=True)]


@dataclass(frozen=True)
class PeerOptimize:
    """vllm-sr-sim's own minimum fleet (one pool, no length routing) for a p99 TTFT SLO."""

    gpu: str
    arrival_rate: float
    max_ctx: int
    slo_ttft_s: float
    min_gpus: int
    p99_ttft_s: float  # analytical, at min_gpus (wait + mean prefill)
    slo_met: bool  # by the analytical p99 TTFT
    cost_per_hour: float
    des_p99_ttft_s: float | None  # optimize's slot-level DES check at min_gpus, if asked


def optimize(
    prompt_tokens: Sequence[int],
    output_tokens: Sequence[int],
    arrival_rate: float,
    gpu: GpuName,
    *,
    slo_ttft_s: float = 0.5,
    max_ctx: int | None = None,
    model: str | None = None,
    tp: int = 1,
    verify_requests: int = 0,
) -> PeerOptimize:
    """Run ``FleetOptimizer`` with a single pool that holds every request (``B_short = max_ctx``).

    It samples lengths from the total-token CDF and splits them 80/20; ``verify_requests > 0``
    also runs the slot-level DES ``optimize`` uses to verify its best candidates.
    """
    profile = gpu_profile(gpu, model, tp)
    ctx = max_ctx or default_max_ctx(prompt_tokens, output_tokens)
    _pairs(prompt_tokens, output_tokens, ctx)
    cdf = total_token_cdf(prompt_tokens, output_tokens)
    optimizer = FleetOptimizer(
        gpu_short=profile,
        gpu_long=profile,
        B_short=ctx,
        t_slo_ms=slo_ttft_s * 1000,
        long_max_ctx=ctx,  # unused: every request fits B_short, so the long pool stays empty
    )
    report = optimizer.optimize(
        cdf,
        arrival_rate,
        gammas=[1.0],
        n_sim_requests=verify_requests,
        verify_top_n=1 if verify_requests > 0 else 0,
        verbose=False,
    )
    best = report.analytical[0]
    checked = report.simulated[0].p99_ttft_short_ms / 1000 if report.simulated else None
    return PeerOptimize(
        gpu=profile.name,
        arrival_rate=arrival_rate,
        max_ctx=ctx,
        slo_ttft_s=slo_ttft_s,
        min_gpus=best.total_gpus,
        p99_ttft_s=max(best.p99_ttft_short_ms, best.p99_ttft_long_ms) / 1000,
        slo_met=best.slo_met,
        cost_per_hour=best.cost_per_hr,
        des_p99_ttft_s=checked,
    )


@dataclass(frozen=True)
class PeerSimulation:
    """vllm-sr-sim's request-level simulator on one pool (see the module notes on its slots)."""

    gpu: str
    n_gpus: int
    arrival_rate: float
    balancer: str
    completed: int
    p50_ttft_s: float
    p99_ttft_s: float
    p99_queue_wait_s: float
    p99_e2e_s: float  # arrival to the last token (physical end)
    slo_ttft_s: float
    slo_compliance: float  # fraction with TTFT <= slo
    busy_fraction: float  # its "utilisation": time with >= 1 request, averaged over instances
    completions_per_s: float  # by slot release times
    requests_per_instance: tuple[int, ...]
    preemptions: int
    cost_per_hour: float


def simulate(
    prompt_tokens: Sequence[int],
    output_tokens: Sequence[int],
    arrival_rate: float,
    gpu: GpuName,
    n_gpus: int,
    *,
    n_requests: int = 20_000,
    balancer: Balancer = "least_queue",
    slo_ttft_s: float = 0.5,
    max_ctx: int | None = None,
    model: str | None = None,
    tp: int = 1,
    seed: int = 0,
) -> PeerSimulation:
    """Replay ``n_requests`` drawn from the pairs (with replacement), Poisson arrivals."""
    profile = gpu_profile(gpu, model, tp)
    ctx = max_ctx or default_max_ctx(prompt_tokens, output_tokens)
    pairs = _pairs(prompt_tokens, output_tokens, ctx)
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / arrival_rate, n_requests))
    picks = pairs[rng.integers(0, len(pairs), n_requests)]
    arrivals = [
        (float(t), Request(req_id=k, arrival_time=float(t), l_in=int(i), l_out=int(o)))
        for k, (t, (i, o)) in enumerate(zip(times, picks, strict=True))
    ]
    pool = PoolConfig("pool", profile, n_gpus, ctx, lb_strategy=balancer)
    result = Fleet(FleetConfig(pools=[pool], router_type="LengthRouter")).run(arrivals)
    done = result.completed
    per_instance = Counter(r.instance_id for r in done)
    e2e = np.array([r.e2e_latency for r in done if r.e2e_latency is not None])
    ends = [r.end_time for r in done if r.end_time is not None]
    span = max(ends) - min(r.arrival_time for r in done) if ends else math.nan
    return PeerSimulation(
        gpu=profile.name,
        n_gpus=n_gpus,
        arrival_rate=arrival_rate,
        balancer=balancer,
        completed=len(done),
        p50_ttft_s=result.p50_ttft_ms() / 1000,
        p99_ttft_s=result.p99_ttft_ms() / 1000,
        p99_queue_wait_s=result.p99_queue_wait_ms() / 1000,
        p99_e2e_s=float(np.percentile(e2e, 99)) if len(e2e) else math.nan,
        slo_ttft_s=slo_ttft_s,
        slo_compliance=result.slo_compliance(slo_ttft_s * 1000),
        busy_fraction=result.mean_utilisation(),
        completions_per_s=len(ends) / span if span and span > 0 else math.nan,
        requests_per_instance=tuple(per_instance.get(k, 0) for k in range(n_gpus)),
        preemptions=sum(i.total_preempted for p in result.pools.values() for i in p.instances),
        cost_per_hour=result.cost_per_hr(),
    )
