"""Static configuration of the simulated serving engine, shared by every replica of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numba as nb
from numba.cpython.unsafe.numbers import leading_zeros
import numpy as np

import hwmodels
from envs.core.workload import CLOCK_LIMIT_S
from traces.checks import is_integer

# Most KV blocks a replica may have: the cluster state keeps its free blocks in int32 (envs.core.state), where
# 2**32 + 26,099 blocks wrapped to 26,099 (the replica ran with those while the observation divided by the whole)
MAX_BLOCKS = 2**31 - 1

# The range of an SLO (slo_ttft_s, slo_tpot_s): from the clock's resolution, a microsecond, to its span, 2^32 s
# (envs.core.workload.CLOCK_LIMIT_S). Features and rewards are times in SLOs: slo_ttft_s=1e-40 made KVAdmission's
# and Routing's observations inf (and Routing's rewards), 1e308 Routing's.
SLO_MIN_S = 1e-6

# The environments claim vLLM's behaviour: their step times use vLLM's engine profile
# (hwmodels/data/engine_profiles.toml [vllm]; README, Fidelity).
DEFAULT_PROFILE = "vllm"

# The step-time model lives in hwmodels; the simulator compiles that same function
# (``step_time_reference``) and runs ``step_time``, the same arithmetic with its three libm calls
# short-cut where the result is exact without them (bit-identical; tests/test_core.py checks it).
step_time_reference = nb.njit(cache=True)(hwmodels.iteration_time)


@nb.njit(cache=True, inline="always")
def pow2_ceil_log2(x):
    """``2.0 ** np.ceil(np.log2(x) - 1e-9)`` (the CUDA-graph padding of ``hwmodels.iteration_time``)
    bit for bit, without log2 and pow for an integer x in [1, 2**30] (what the padding sees: batch
    sizes and token counts over power-of-two steps): a power of two is itself (log2 exact), any
    other n rounds up to the next power of two (log2(n) is then at least 2**-30 / ln 2 > 1e-9 above
    its floor, so the tolerance cannot decide). Any other x runs the original expression."""
    if x >= 1.0 and x <= 1073741824.0:
        n = np.int64(x)
        if n == x:
            if n & (n - 1) == 0:
                return x
            return float(np.int64(1) << (np.int64(64) - leading_zeros(n)))
    return 2.0 ** np.ceil(np.log2(x) - 1e-9)


@nb.njit(cache=True, inline="always")
def _coefficients(coeffs):
    """``coeffs`` (float64 [N_COEFFS = 30]) as a tuple of floats: a tuple of scalars has no reference
    count, so ``step_time`` can branch on the coefficients without updating the array's on every call
    (an alias of the array in a function with branches kept an atomic increment and decrement)."""
    return (coeffs[0], coeffs[1], coeffs[2], coeffs[3], coeffs[4], coeffs[5], coeffs[6], coeffs[7], coeffs[8],
            coeffs[9], coeffs[10], coeffs[11], coeffs[12], coeffs[13], coeffs[14], coeffs[15], coeffs[16],
            coeffs[17], coeffs[18], coeffs[19], coeffs[20], coeffs[21], coeffs[22], coeffs[23], coeffs[24],
            coeffs[25], coeffs[26], coeffs[27], coeffs[28], coeffs[29])


@nb.njit(cache=True, inline="always")
def _shared_terms(c, t, t1, s, s1, d, d_graph, decode_kv_tokens, longest_decode):
    """The terms ``step_time`` and ``_decode_step_time`` share, as one floating-point sequence:
    linear, MoE, decode attention (its straggler through the split chunk of the padded decode
    batch ``d_graph``), LM head, communication and elementwise seconds, for the padded token
    count ``t`` (``t1`` = min(t, 1)) and LM-head rows ``s`` (``s1`` = min(s, 1))."""
    a = t * c[0]
    b = t1 * c[1]
    linear = 0.5 * (a + b + abs(a - b)) + c[28] * 0.5 * (a + b - abs(a - b))

    # c4 x (1 - c5 ** t) of hwmodels.iteration_time; a dense model's c4 = +-0 gives c4 itself (+-0 times a
    # finite 1 - c5 ** t in [0, 1] where 0 <= c5 <= 1 and t is not NaN) without the pow call. The guard
    # ``1.0 if c5 == 1.0 else c5 ** t`` did not avoid it: LLVM folds that select into the call (pow(1, y)
    # is 1), which then ran on every iteration.
    if c[4] == 0.0 and 0.0 <= c[5] <= 1.0 and t == t:
        touched = c[4]
    else:
        touched = c[4] * (1.0 - c[5] ** t)
    a = t * c[2]
    b = touched * c[3]
    moe = 0.5 * (a + b + abs(a - b))

    a = decode_kv_tokens * c[8]
    b = decode_kv_tokens * c[9]
    attn_dec = 0.5 * (a + b + abs(a - b))
    unknown = (longest_decode < 0.0) * 1.0
    dd = 0.5 * (d + 1.0 + abs(d - 1.0))
    lng = unknown * (decode_kv_tokens / dd) + (1.0 - unknown) * longest_decode
    kk = d_graph / c[18]
    chunk = (kk == 1.0) * c[24] + (kk == 2.0) * c[25] + (kk == 3.0) * c[26] + (kk == 4.0) * c[27]
    split = (chunk > 0.0) * 1.0
    capped = 0.5 * (lng + chunk - abs(lng - chunk))
    attn_dec = attn_dec + split * c[19] * capped + (1.0 - split) * c[17] * lng

    a = s * c[10]
    b = s1 * c[11]
    lm_head = 0.5 * (a + b + abs(a - b))

    comm = t * c[12] + t1 * c[13]
    elementwise = t * c[16]
    return linear, moe, attn_dec, lm_head, comm, elementwise


@nb.njit(cache=True, inline="always")
def _decode_step_time(c, d, decode_kv_tokens, longest_decode):
    """``step_time`` of an iteration without prefill (P = 0, no attention pairs, finite D and
    longest prefill), the same floating-point operations with f = min(P, 1) = 0 folded where the
    result is exact for the non-negative coefficients and loads iterations have: f x (finite) is
    +-0, and x + (+-0) is x for x >= 0 (the CUDA-graph terms
    d_graph = t = s = d_only; attn_pre = 0; overhead = c14 + D c15)."""
    d_only = np.ceil(d / c[20]) * c[20]
    t = d_only
    t1 = 0.5 * (t + 1.0 - abs(t - 1.0))
    s = d_only
    s1 = 0.5 * (s + 1.0 - abs(s - 1.0))

    linear, moe, attn_dec, lm_head, comm, elementwise = _shared_terms(
        c, t, t1, s, s1, d, t, decode_kv_tokens, longest_decode)
    overhead = c[14] + d * c[15]
    return linear + moe + attn_dec + lm_head + comm + overhead + elementwise


@nb.njit(cache=True)
def step_time(coeffs, prefill_tokens, prefill_attn_pairs, decode_seqs, decode_kv_tokens, longest_decode=-1.0,
              longest_prefill=-1.0):
    """Seconds of one engine iteration: ``hwmodels.iteration_time`` (its formula, arguments and units),
    scalars only, bit-identical to it (``step_time_reference``): the powers of two of the CUDA-graph
    padding through :func:`pow2_ceil_log2`, and ``c[5] ** t`` skipped for a dense model (c4 = 0, see
    ``_shared_terms``); the coefficients read once into a tuple (``_coefficients``). About 6x faster (three libm calls of ~20 ns each were most
    of its time; Routing-v0 runs ~200 iterations per routed request)."""
    c = _coefficients(coeffs)
    p = prefill_tokens
    d = decode_seqs
    if p == 0.0 and prefill_attn_pairs == 0.0 and abs(longest_prefill) < np.inf and abs(d) < np.inf:
        return _decode_step_time(c, d, decode_kv_tokens, longest_decode)
    f = 0.5 * (p + 1.0 - abs(p - 1.0))
    d_only = np.ceil(d / c[20]) * c[20]
    d1 = 0.5 * (d + 1.0 - abs(d - 1.0))
    dmx = 0.5 * (d + c[22] + abs(d - c[22]))
    pmx = 0.5 * (p + c[23] + abs(p - c[23]))
    d_pow = d1 * c[22] * pow2_ceil_log2(dmx / c[22])
    p_pow = f * c[23] * pow2_ceil_log2(pmx / c[23])
    g = c[21]
    d_graph = (1.0 - f) * d_only + f * (g * d_pow + (1.0 - g) * d)
    t = d_graph + f * (g * p_pow + (1.0 - g) * p)
    t1 = 0.5 * (t + 1.0 - abs(t - 1.0))
    s = (1.0 - f) * d_only + f * (d + 1.0)
    s1 = 0.5 * (s + 1.0 - abs(s - 1.0))

    linear, moe, attn_dec, lm_head, comm, elementwise = _shared_terms(
        c, t, t1, s, s1, d, d_graph, decode_kv_tokens, longest_decode)
    a = prefill_attn_pairs * c[6]
    b = p * c[7]
    attn_pre = 0.5 * (a + b + abs(a - b))
    lp = 0.5 * (longest_prefill + abs(longest_prefill)) * c[29] * f
    attn_pre = 0.5 * (attn_pre + lp + abs(attn_pre - lp))
    overhead = c[14] + (d + f) * c[15]
    return linear + moe + attn_pre + attn_dec + lm_head + comm + overhead + elementwise



# step_time compiled for inlining (numba IR) into the engine iteration (envs/core/replica.py), which calls
# it once per iteration (~200 per routed request in Routing-v0): no call, no array passed.
step_time_inline = nb.njit(inline="always")(step_time.py_func)

class Engine(NamedTuple):
    """Scalars and the step-time coefficients, in the form numba kernels take."""

    coeffs: np.ndarray  # hwmodels.StepTimeModel.coeffs
    block_size: int  # tokens per paged-KV block
    capacity_blocks: int  # KV blocks of one replica
    max_seqs: int  # running requests per replica (vLLM max_num_seqs)
    slo_ttft: float  # seconds
    slo_tpot: float  # seconds: the TPOT limit (slo_metric 0) or the p99-gap limit (slo_metric 1)
    slo_metric: int  # envs.slo.SLO_TPOT (MLPerf / DistServe) or envs.slo.SLO_P99_TBT
    cache_on: bool  # prefix caching
    chain_block_tokens: int  # tokens per prefix-chain block of the trace
    max_output: int  # max_tokens of every request (reservation-based admission)
    idle_tick_s: float  # time an idle decision lets pass when no arrival comes sooner
    max_model_len: int  # longest prompt + output the engine accepts (vLLM max_model_len)
    # Scheduler (envs/core/replica.py run_iteration). False: decodes first, then prefill chunks in the
    # same batch under the budget (vLLM V1, Sarathi-Serve): what the environments run. True: a batch of
    # prefills whenever a waiting request can start, decodes only otherwise (vLLM V0, SGLang).
    prefill_first: bool = False
    # With prefill_first: True, a prompt larger than the remaining budget is split (SGLang
    # chunked_prefill_size); False, prompts are scheduled whole (vLLM V0 without chunked prefill).
    chunked_prefill: bool = True


@dataclass(frozen=True)
class EngineSpec:
    """What a user picks; ``build`` turns it into an :class:`Engine` via hwmodels."""

    model: str = "Llama-3.1-8B"
    gpu: str = "H100"
    tp: int = 1
    mem_frac: float = 0.9  # vLLM gpu_memory_utilization default
    block_size: int = 16  # vLLM default block size
    # vLLM EngineArgs.get_batch_defaults: max_num_seqs 1024 on GPUs with >= 70 GiB (not A100)
    max_seqs: int = 1024
    slo_ttft_s: float | None = None  # None: the model's default (envs/data/slo.toml)
    slo_tpot_s: float | None = None
    slo_metric: str = "tpot"  # per-request check: "tpot" (MLPerf, DistServe) or "p99_tbt" (envs/slo.py)
    capacity_blocks: int | None = None  # None: from hwmodels.kv_capacity_blocks
    max_output: int = 4096
    idle_tick_s: float = 0.01
    max_model_len: int | None = None  # None: the model's context length (hwmodels catalogue)
    # engine profile of the step-time model (hwmodels/data/engine_profiles.toml): the environments
    # claim vLLM's behaviour, so vLLM's profile; None: the H200 calibration alone (plain PyTorch kernels)
    profile: str | None = DEFAULT_PROFILE

    # The fields an environment config shares with the engine (same names, same meaning).
    SHARED_FIELDS = ("model", "gpu", "tp", "mem_frac", "capacity_blocks", "max_seqs", "slo_ttft_s",
                     "slo_tpot_s", "slo_metric")

    @classmethod
    def from_config(cls, cfg: Any) -> EngineSpec:
        """The engine of an environment config that has every field of ``SHARED_FIELDS``."""
        return cls(**{name: getattr(cfg, name) for name in cls.SHARED_FIELDS})

    def build(self, cache_on: bool = False, chain_block_tokens: int = 1) -> Engine:
        from envs.slo import default_slo, slo_metric_code

        model = hwmodels.get_model(self.model)
        gpu = hwmodels.get_gpu(self.gpu)
        for name in ("tp", "block_size", "max_seqs", "max_output"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineSpec.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.mem_frac <= 1.0:
            raise ValueError(f"EngineSpec.mem_frac must be in (0, 1], got {self.mem_frac}")
        cap = self.capacity_blocks
        if cap is not None and (not is_integer(cap) or cap < 1):
            raise ValueError(f"capacity_blocks must be an integer >= 1 (KV blocks per replica), got {cap!r}")
        if cap is not None and cap > MAX_BLOCKS:  # the cluster state counts free blocks in int32 (envs.core.state)
            raise ValueError(f"capacity_blocks must be at most {MAX_BLOCKS} (2**31 - 1: KV block counts are int32), "
                             f"got {cap!r}")
        if cap is None:
            cap = hwmodels.kv_capacity_blocks(model, gpu, self.tp, self.mem_frac, self.block_size)
        if cap < 1:
            raise ValueError(
                f"{self.model} on {self.tp}x {self.gpu} at mem_frac={self.mem_frac} leaves no KV "
                f"memory (capacity {cap} blocks)"
            )
        max_len = model.context_length if self.max_model_len is None else self.max_model_len
        if not is_integer(max_len) or max_len < 2:
            raise ValueError(f"EngineSpec.max_model_len must be an integer >= 2, got {self.max_model_len!r}")
        metric = slo_metric_code(self.slo_metric)
        slo_ttft, slo_tpot = default_slo(model.name)
        for name in ("slo_ttft_s", "slo_tpot_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"EngineSpec.{name} must be > 0 seconds, got {v!r}")
            # inf: no SLO (hwmodels.validate.published compares latencies only); an environment that cannot take
            # one refuses it itself (KVAdmission-v0: its request counts are in units of capacity x TTFT SLO)
            if v is not None and v != np.inf and not SLO_MIN_S <= v <= CLOCK_LIMIT_S:
                raise ValueError(f"EngineSpec.{name} must lie in [{SLO_MIN_S:g}, {CLOCK_LIMIT_S:.10g}] seconds (the "
                                 f"simulated clock keeps microseconds up to 2^32 s), or be inf (no SLO), got {v!r}")
        stm = hwmodels.StepTimeModel(model, gpu, tp=self.tp, profile=self.profile)
        return Engine(
            coeffs=np.ascontiguousarray(stm.coeffs, dtype=np.float64),
            block_size=int(self.block_size),
            capacity_blocks=int(cap),
            max_seqs=int(self.max_seqs),
            slo_ttft=float(self.slo_ttft_s if self.slo_ttft_s is not None else slo_ttft),
            slo_tpot=float(self.slo_tpot_s if self.slo_tpot_s is not None else slo_tpot),
            slo_metric=metric,
            cache_on=bool(cache_on),
            chain_block_tokens=int(chain_block_tokens),
            max_output=int(self.max_output),
            idle_tick_s=float(self.idle_tick_s),
            max_model_len=int(max_len),
        )
