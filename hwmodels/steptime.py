"""Time of one continuous-batching engine iteration: a per-operator roofline with calibrated efficiencies.

Why this shape: the cluster simulator needs one number per replica iteration, millions of times,
from inside numba kernels. So everything that depends on (model, GPU, TP, calibration) is folded
into a float64 coefficient vector once, and `iteration_time` is a pure function of that vector and
four load numbers, written with arithmetic only (max/min as 0.5*(a+b+|a-b|)), so the same code runs
on numpy arrays (broadcasting) and compiles under numba.njit for float scalars.

Loads of one iteration (vLLM V1 semantics, chunked prefill):
  prefill_tokens      P: new prompt tokens computed this iteration (all chunks)
  prefill_attn_pairs  A: sum over prefill chunks of chunk_len * (ctx + (chunk_len + 1) / 2)
                         (ctx = tokens already in KV before the chunk; causal attention work)
  decode_seqs         D: sequences decoding one token
  decode_kv_tokens    K: sum of those sequences' context lengths (KV read)
Derived: tokens through the linear layers T = P + D; sequences sampled S = D + min(P, 1)
(the prefill chunks are counted as one sequence: the four loads do not say how many there are).

Operator times, each max(FLOP time at calibrated efficiency, byte time at calibrated efficiency):
  linear    max(T * c[LIN_FLOP_S_PER_TOKEN], min(T, 1) * c[LIN_WEIGHT_S])     weights read once
  moe       max(T * c[MOE_FLOP_S_PER_TOKEN], E_touched(T) * c[MOE_EXPERT_S])
            E_touched(T) = E * (1 - (1 - k/E)^T): expected distinct experts hit by T tokens with
            uniform top-k routing (<= min(E, k*T)); only touched experts' weights are read
  attn_pre  max(A * c[ATTN_PREFILL_FLOP_S_PER_PAIR], P * c[ATTN_PREFILL_BYTES_S_PER_TOKEN])
  attn_dec  max(K * c[ATTN_DECODE_FLOP_S_PER_KV], K * c[ATTN_DECODE_BYTES_S_PER_KV])
  lm_head   max(S * c[LMHEAD_FLOP_S_PER_SEQ], min(S, 1) * c[LMHEAD_WEIGHT_S])
  tp comm   T * c[ALLREDUCE_S_PER_TOKEN] + min(T, 1) * c[ALLREDUCE_FIXED_S]  (ring all-reduce, 2/layer)
  elemwise  T * c[ELEMENTWISE_S_PER_TOKEN]   norms, RoPE, SwiGLU, residual adds: memory-bound passes
            over the activations (calibrated: Calibration.elementwise_passes)
  overhead  c[OVERHEAD_S] + S * c[PER_SEQ_S]   (OVERHEAD_S also holds layers * layer_overhead_s and
            MoE layers * moe_latency_s: fixed kernel time per layer, fitted on a real H200)
Engine-profile terms (hwmodels.profiles; zero without a profile):
  linear    + c[LINEAR_MIN_SHARE] * min(FLOP time, weight time): near the ridge point a GEMM neither
            streams its weights at full bandwidth nor computes at peak (0 = the plain roofline)
  attn_pre  max(attn_pre, c[PREFILL_LONGEST_S_PER_TOKEN] * longest prefill context): FlashAttention's
            prefill kernel gives each (query block, head) one CTA that reads the whole prefix, so a short
            chunk late in a long prompt runs on few SMs for as long as that prefix takes
  attn_dec  + straggler: c[DECODE_LONGEST_S_PER_TOKEN] * longest decode context when the kernel does
            not split the KV, or c[DECODE_SPLIT_LONGEST_S_PER_TOKEN] * min(longest, chunk) when it does;
            the chunk comes from a table over the padded decode count (FlashAttention-2's
            num_splits heuristic, hwmodels.profiles.split_chunk_table)
Operators run one after another on the GPU, so the iteration time is their sum. All terms are
non-decreasing in every load, and with Calibration.ideal() no term beats the physical roofline.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .calibration import Calibration, default_calibration
from .catalog import GPU, Model, get_gpu, get_model
from .errors import HwModelError
from .memory import _check_tp, kv_bytes_per_token

# ---- coefficient layout (index map; keep in sync with iteration_time) ------------------------
LIN_FLOP_S_PER_TOKEN = 0  # s/token: dense linears (attn proj, dense MLP, shared experts, router), GEMM FLOPs
LIN_WEIGHT_S = 1  # s/iteration: stream those weights once
MOE_FLOP_S_PER_TOKEN = 2  # s/token: top_k routed experts' GEMM FLOPs, all MoE layers
MOE_EXPERT_S = 3  # s per touched expert: stream one routed expert's weights in every MoE layer
MOE_EXPERTS = 4  # E, routed experts per MoE layer (0 = dense model)
MOE_MISS = 5  # 1 - top_k/E: chance one token does not pick a given expert (1 for dense)
ATTN_PREFILL_FLOP_S_PER_PAIR = 6  # s per causal (query, key) pair, all layers
ATTN_PREFILL_BYTES_S_PER_TOKEN = 7  # s per new token: write its KV and read it back
ATTN_DECODE_FLOP_S_PER_KV = 8  # s per context token of a decoding sequence: QK and PV FLOPs
ATTN_DECODE_BYTES_S_PER_KV = 9  # s per context token of a decoding sequence: KV read
LMHEAD_FLOP_S_PER_SEQ = 10  # s per sampled sequence: logits GEMM
LMHEAD_WEIGHT_S = 11  # s/iteration: stream the LM head once
ALLREDUCE_S_PER_TOKEN = 12  # s/token: TP all-reduce bandwidth term (0 when tp = 1)
ALLREDUCE_FIXED_S = 13  # s/iteration: TP all-reduce latency term (0 when tp = 1)
OVERHEAD_S = 14  # s/iteration: engine overhead + layers * per-layer kernel floor
PER_SEQ_S = 15  # s per scheduled sequence
ELEMENTWISE_S_PER_TOKEN = 16  # s/token: elementwise activation traffic, all layers (added by the H200 calibration)
# Engine-profile terms (hwmodels.profiles; neutral values when no profile is given):
DECODE_LONGEST_S_PER_TOKEN = 17  # s per token of the longest decode context: straggler (0 = absent)
DECODE_SPLIT_UNIT = 18  # padded decode sequences per step of the split-KV chunk table (>= 1)
DECODE_SPLIT_LONGEST_S_PER_TOKEN = 19  # s per token of the longest decode context when the kernel splits the KV
PAD_DECODE_MULTIPLE = 20  # decode-only iterations: decode sequences padded to a multiple (1 = none)
PAD_MIXED_POW2 = 21  # 1: iterations with prefill pad decodes and prefill tokens to powers of two
PAD_MIXED_DECODE_MIN = 22  # smallest padded decode count of a mixed iteration (power of two)
PAD_MIXED_PREFILL_MIN = 23  # smallest padded prefill token count (power of two)
DECODE_SPLIT_CHUNK_1 = 24  # split-KV chunk (tokens) of a padded decode batch of 1 x DECODE_SPLIT_UNIT sequences
DECODE_SPLIT_CHUNK_2 = 25  # ... 2 x unit (0 = the kernel does not split: straggler on the whole context)
DECODE_SPLIT_CHUNK_3 = 26  # ... 3 x unit
DECODE_SPLIT_CHUNK_4 = 27  # ... 4 x unit (larger batches never split)
LINEAR_MIN_SHARE = 28  # linear = max(FLOP time, weight time) + this x min(...): GEMMs near the ridge point
PREFILL_LONGEST_S_PER_TOKEN = 29  # s per token of the longest prefill context (kv + chunk): prefill straggler
N_COEFFS = 30

COEFF_INDEX: dict[str, int] = {
    name: idx for name, idx in globals().items()
    if name.isupper() and isinstance(idx, int) and name != "N_COEFFS"
}


def iteration_time(coeffs, prefill_tokens, prefill_attn_pairs, decode_seqs, decode_kv_tokens, longest_decode=-1.0,
                   longest_prefill=-1.0):
    """Seconds for one engine iteration (see the module docstring for the formula).

    Pure arithmetic on `coeffs` (float64 array of length N_COEFFS, from build_coeffs) and the loads;
    accepts numpy arrays (broadcast) or scalars, and numba.njit compiles it for scalars.
    `longest_decode`: context tokens of the longest decoding sequence (the straggler term of an engine
    profile); < 0 means unknown, and the mean context decode_kv_tokens / decode_seqs stands in.
    `longest_prefill`: context after the prefill chunk that reaches furthest into its prompt (kv + chunk;
    the prefill straggler of engine profiles); < 0 means unknown and drops that term.
    No input checking here (hot path): StepTimeModel.iteration_time validates.
    """
    c = coeffs
    p = prefill_tokens
    d = decode_seqs
    f = 0.5 * (p + 1.0 - abs(p - 1.0))  # min(P, 1): the iteration has prefill
    # CUDA-graph padding (engine profile): tokens through the linear layers
    d_only = np.ceil(d / c[20]) * c[20]
    d1 = 0.5 * (d + 1.0 - abs(d - 1.0))
    dmx = 0.5 * (d + c[22] + abs(d - c[22]))
    pmx = 0.5 * (p + c[23] + abs(p - c[23]))
    d_pow = d1 * c[22] * 2.0 ** np.ceil(np.log2(dmx / c[22]) - 1e-9)
    p_pow = f * c[23] * 2.0 ** np.ceil(np.log2(pmx / c[23]) - 1e-9)
    g = c[21]
    d_graph = (1.0 - f) * d_only + f * (g * d_pow + (1.0 - g) * d)
    t = d_graph + f * (g * p_pow + (1.0 - g) * p)
    t1 = 0.5 * (t + 1.0 - abs(t - 1.0))  # min(T, 1)
    s = (1.0 - f) * d_only + f * (d + 1.0)  # sequences sampled: D + min(P, 1), padded when decode-only
    s1 = 0.5 * (s + 1.0 - abs(s - 1.0))  # min(S, 1)

    a = t * c[0]
    b = t1 * c[1]
    linear = 0.5 * (a + b + abs(a - b)) + c[28] * 0.5 * (a + b - abs(a - b))

    touched = c[4] * (1.0 - c[5] ** t)
    a = t * c[2]
    b = touched * c[3]
    moe = 0.5 * (a + b + abs(a - b))

    a = prefill_attn_pairs * c[6]
    b = p * c[7]
    attn_pre = 0.5 * (a + b + abs(a - b))
    # prefill straggler: a chunk late in a long prompt reads the whole prefix; FlashAttention's
    # prefill kernel does not split the KV, so few query blocks leave the GPU waiting for them
    lp = 0.5 * (longest_prefill + abs(longest_prefill)) * c[29] * f
    attn_pre = 0.5 * (attn_pre + lp + abs(attn_pre - lp))

    a = decode_kv_tokens * c[8]
    b = decode_kv_tokens * c[9]
    attn_dec = 0.5 * (a + b + abs(a - b))
    # straggler: a decode kernel without split-KV waits for its longest sequence
    unknown = (longest_decode < 0.0) * 1.0
    dd = 0.5 * (d + 1.0 + abs(d - 1.0))  # max(D, 1)
    lng = unknown * (decode_kv_tokens / dd) + (1.0 - unknown) * longest_decode
    kk = d_graph / c[18]  # step of the split-KV table
    chunk = (kk == 1.0) * c[24] + (kk == 2.0) * c[25] + (kk == 3.0) * c[26] + (kk == 4.0) * c[27]
    split = (chunk > 0.0) * 1.0
    capped = 0.5 * (lng + chunk - abs(lng - chunk))  # min(longest, chunk)
    attn_dec = attn_dec + split * c[19] * capped + (1.0 - split) * c[17] * lng

    a = s * c[10]
    b = s1 * c[11]
    lm_head = 0.5 * (a + b + abs(a - b))

    comm = t * c[12] + t1 * c[13]
    overhead = c[14] + (d + f) * c[15]
    elementwise = t * c[16]
    return linear + moe + attn_pre + attn_dec + lm_head + comm + overhead + elementwise


def attn_pairs(chunk_len, ctx):
    """Causal attention pairs of one prefill chunk: chunk_len * (ctx + (chunk_len + 1) / 2)."""
    chunk_len = np.asarray(chunk_len, dtype=np.float64)
    ctx = np.asarray(ctx, dtype=np.float64)
    out = chunk_len * (ctx + (chunk_len + 1.0) / 2.0)
    return float(out) if out.ndim == 0 else out


def _attn_flops(m: Model, tp: int) -> tuple[float, float]:
    """(FLOPs per prefill pair, FLOPs per decode context token), all layers, one TP rank."""
    heads = m.heads / tp
    if m.is_mla:
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        prefill = 2.0 * qk + 2.0 * m.v_head_dim  # vLLM MLA prefill: explicit K/V per head
        decode = 2.0 * (m.kv_lora_rank + m.qk_rope_head_dim) + 2.0 * m.kv_lora_rank  # absorbed latent form
    else:
        prefill = decode = 4.0 * m.head_dim  # QK^T and PV, multiply-add = 2 FLOPs
    return m.layers * heads * prefill, m.layers * heads * decode


def build_coeffs(model: str | Model, gpu: str | GPU, tp: int = 1, calibration: Calibration | None = None,
                 profile: "str | EngineProfile | None" = None) -> np.ndarray:
    """Fold model, GPU, TP degree, calibration and engine profile into the float64 coefficient vector.

    profile: None (the calibration alone: no straggler, no padding), a name of
    hwmodels/data/engine_profiles.toml ("vllm", "reference") or an EngineProfile. A profile sets the
    fixed costs (overhead_s, layer_overhead_s, per_seq_overhead_s), scales operator terms and adds
    its kernel and CUDA-graph terms. Raises HwModelError for an unknown profile name.
    """
    from .profiles import EngineProfile, get_profile, split_chunk_table

    m, g = get_model(model), get_gpu(gpu)
    _check_tp(m, tp)
    cal = default_calibration() if calibration is None else calibration
    if not isinstance(cal, Calibration):
        raise HwModelError(f"calibration must be a hwmodels.Calibration, got {type(cal).__name__}")
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if prof is not None and not isinstance(prof, EngineProfile):
        raise HwModelError(f"profile must be a name or a hwmodels.EngineProfile, got {type(profile).__name__}")
    if prof is not None:
        cal = dataclasses.replace(cal, overhead_s=prof.overhead_s, layer_overhead_s=prof.layer_overhead_s,
                                  per_seq_overhead_s=prof.per_seq_overhead_s)
    lin_flops = g.flops(m.linear_dtype_bytes) * cal.gemm_flops_eff
    act_flops = g.bf16_flops * cal.gemm_flops_eff
    attn_flops = g.bf16_flops * cal.attn_flops_eff
    w_bw = g.hbm_bw * cal.mem_bw_eff
    kv_bw = g.hbm_bw * cal.attn_mem_eff
    ldb = m.linear_dtype_bytes

    dense_params = (m.layers * m.attn_params + m.n_dense_layers * m.dense_mlp_params
                    + m.n_moe_layers * (m.shared_params + m.router_params)) / tp
    c = np.zeros(N_COEFFS, dtype=np.float64)
    c[LIN_FLOP_S_PER_TOKEN] = 2.0 * dense_params / lin_flops
    c[LIN_WEIGHT_S] = dense_params * ldb / w_bw
    if m.is_moe:  # grouped expert GEMMs: their own efficiencies (Calibration.moe_*)
        moe_flops = g.flops(m.linear_dtype_bytes) * cal.moe_flops_eff
        c[MOE_FLOP_S_PER_TOKEN] = 2.0 * m.top_k * m.expert_params * m.n_moe_layers / tp / moe_flops
        c[MOE_EXPERT_S] = m.n_moe_layers * m.expert_params * ldb / tp / (g.hbm_bw * cal.moe_mem_eff)
        c[MOE_EXPERTS] = float(m.experts)
        c[MOE_MISS] = 1.0 - m.top_k / m.experts
    else:
        c[MOE_MISS] = 1.0
    kvb = kv_bytes_per_token(m, tp)
    f_pair, f_kv = _attn_flops(m, tp)
    c[ATTN_PREFILL_FLOP_S_PER_PAIR] = f_pair / attn_flops
    c[ATTN_PREFILL_BYTES_S_PER_TOKEN] = 2.0 * kvb / kv_bw
    c[ATTN_DECODE_FLOP_S_PER_KV] = f_kv / attn_flops
    c[ATTN_DECODE_BYTES_S_PER_KV] = kvb / kv_bw
    lm = m.hidden * m.vocab / tp  # vocab-parallel LM head (tied or not, it is a GEMM over the vocab)
    c[LMHEAD_FLOP_S_PER_SEQ] = 2.0 * lm / act_flops
    c[LMHEAD_WEIGHT_S] = lm * m.dtype_bytes / w_bw
    if tp > 1:
        n_allreduce = 2 * m.layers  # after attention output and after the MLP/MoE of each layer
        per_dir_bw = 0.5 * g.scaleup_bw * cal.comm_eff
        c[ALLREDUCE_S_PER_TOKEN] = n_allreduce * 2.0 * (tp - 1) / tp * m.hidden * m.dtype_bytes / per_dir_bw
        c[ALLREDUCE_FIXED_S] = n_allreduce * cal.comm_latency_s
    c[OVERHEAD_S] = cal.overhead_s + m.layers * cal.layer_overhead_s + m.n_moe_layers * cal.moe_latency_s
    c[PER_SEQ_S] = cal.per_seq_overhead_s
    # read + write passes over the [tokens x hidden] activations in every layer (TP ranks hold them whole)
    c[ELEMENTWISE_S_PER_TOKEN] = m.layers * cal.elementwise_passes * m.hidden * m.dtype_bytes / w_bw
    c[PAD_DECODE_MULTIPLE] = 1.0
    c[DECODE_SPLIT_UNIT] = 1.0
    c[PAD_MIXED_DECODE_MIN] = 1.0
    c[PAD_MIXED_PREFILL_MIN] = 1.0
    if prof is not None:
        for i in (LIN_FLOP_S_PER_TOKEN, LIN_WEIGHT_S, ELEMENTWISE_S_PER_TOKEN):
            c[i] *= prof.linear_scale
        c[ATTN_PREFILL_FLOP_S_PER_PAIR] *= prof.prefill_attn_scale
        c[ATTN_PREFILL_BYTES_S_PER_TOKEN] *= prof.prefill_attn_scale
        c[ATTN_DECODE_BYTES_S_PER_KV] *= prof.decode_kv_read_scale
        c[ATTN_DECODE_FLOP_S_PER_KV] *= prof.decode_kv_read_scale
        # straggler: per token of the longest context, per layer, at the profile's per-CTA rate
        c[DECODE_LONGEST_S_PER_TOKEN] = prof.decode_longest_s_per_token_layer * m.layers
        c[DECODE_SPLIT_LONGEST_S_PER_TOKEN] = prof.decode_split_longest_s_per_token_layer * m.layers
        c[DECODE_SPLIT_UNIT] = prof.pad_decode_multiple
        for k, chunk in enumerate(split_chunk_table(prof, m.kv_heads // tp)):
            c[DECODE_SPLIT_CHUNK_1 + k] = chunk
        c[LINEAR_MIN_SHARE] = prof.linear_min_share
        c[PREFILL_LONGEST_S_PER_TOKEN] = prof.prefill_longest_s_per_token_layer * m.layers
        c[PAD_DECODE_MULTIPLE] = prof.pad_decode_multiple
        c[PAD_MIXED_POW2] = 1.0 if prof.pad_mixed_pow2 else 0.0
        c[PAD_MIXED_DECODE_MIN] = prof.pad_mixed_decode_min
        c[PAD_MIXED_PREFILL_MIN] = prof.pad_mixed_prefill_min
        c[MOE_FLOP_S_PER_TOKEN] *= prof.moe_expert_scale
        c[MOE_EXPERT_S] *= prof.moe_expert_scale
        if m.linear_dtype_bytes == 1:  # FP8 weights: the engine's FP8 GEMMs
            c[LIN_FLOP_S_PER_TOKEN] *= prof.fp8_gemm_scale
            c[MOE_FLOP_S_PER_TOKEN] *= prof.fp8_gemm_scale
    return c


def gemm_time(tokens, k: int, n: int, gpu: str | GPU, calibration: Calibration | None = None,
              weight_bytes: int = 2):
    """Seconds for one standalone GEMM x[tokens, k] @ W[k, n] (the `linear` operator's roofline for a
    single weight matrix, plus Calibration.gemm_latency_s): max(2*tokens*k*n FLOPs at gemm_flops_eff,
    k*n weight bytes at mem_bw_eff) + latency. Numpy broadcasting over `tokens`."""
    g = get_gpu(gpu)
    cal = default_calibration() if calibration is None else calibration
    t = np.asarray(tokens, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 1):
        raise HwModelError(f"gemm_time: tokens must be finite and >= 1, got {tokens!r}")
    if k < 1 or n < 1 or weight_bytes not in (1, 2):
        raise HwModelError(f"gemm_time: need k, n >= 1 and weight_bytes 1 or 2, got {k}, {n}, {weight_bytes}")
    flop = 2.0 * t * k * n / (g.flops(weight_bytes) * cal.gemm_flops_eff)
    byte = float(k) * n * weight_bytes / (g.hbm_bw * cal.mem_bw_eff)
    out = np.maximum(flop, byte) + cal.gemm_latency_s
    return float(out) if out.ndim == 0 else out


def _loads(*args: object) -> list[np.ndarray]:
    names = ("prefill_tokens", "prefill_attn_pairs", "decode_seqs", "decode_kv_tokens")
    out = []
    for name, val in zip(names, args):
        try:
            arr = np.asarray(val, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise HwModelError(f"iteration_time: {name} must be numeric, got {val!r}") from exc
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise HwModelError(f"iteration_time: {name} must be finite and >= 0, got {val!r}")
        out.append(arr)
    try:
        np.broadcast_shapes(*(a.shape for a in out))
    except ValueError as exc:
        raise HwModelError(f"iteration_time: load shapes {[a.shape for a in out]} do not broadcast") from exc
    return out


class StepTimeModel:
    """Iteration-time model of one replica: `model` on `tp` GPUs of type `gpu`.

    `coeffs` (float64, N_COEFFS long, layout COEFF_INDEX) is what the vectorized simulator passes to
    the module-level `iteration_time` from numba kernels.
    """

    def __init__(self, model: str | Model, gpu: str | GPU, tp: int = 1, calibration: Calibration | None = None,
                 profile=None):
        self.model = get_model(model)
        self.gpu = get_gpu(gpu)
        self.tp = tp
        self.calibration = default_calibration() if calibration is None else calibration
        self.profile = profile
        self.coeffs: np.ndarray = build_coeffs(self.model, self.gpu, tp, self.calibration, profile)

    def __repr__(self) -> str:
        prof = getattr(self.profile, "name", self.profile)
        return f"StepTimeModel({self.model.name!r}, {self.gpu.name!r}, tp={self.tp}, profile={prof!r})"

    def iteration_time(self, prefill_tokens, prefill_attn_pairs, decode_seqs, decode_kv_tokens,
                       longest_decode=None, longest_prefill=None) -> np.ndarray | float:
        """Seconds for one iteration; numpy broadcasting over the loads (float for scalars).
        longest_decode: context of the longest decoding sequence (None: the mean stands in);
        longest_prefill: kv + chunk of the prefill chunk deepest into its prompt (None: no prefill straggler).
        HwModelError for loads that are not finite and >= 0."""
        p, a, d, k = _loads(prefill_tokens, prefill_attn_pairs, decode_seqs, decode_kv_tokens)
        if longest_decode is None:
            lng = -1.0
        else:
            lng = np.asarray(longest_decode, dtype=np.float64)
            if not np.all(np.isfinite(lng)) or np.any(lng < 0):
                raise HwModelError(f"iteration_time: longest_decode must be finite and >= 0, got {longest_decode!r}")
        if longest_prefill is None:
            lpf = -1.0
        else:
            lpf = np.asarray(longest_prefill, dtype=np.float64)
            if not np.all(np.isfinite(lpf)) or np.any(lpf < 0):
                raise HwModelError(f"iteration_time: longest_prefill must be finite and >= 0, got {longest_prefill!r}")
        out = iteration_time(self.coeffs, p, a, d, k, lng, lpf)
        return float(out) if np.ndim(out) == 0 else out

    def breakdown(self, prefill_tokens: float, prefill_attn_pairs: float, decode_seqs: float,
                  decode_kv_tokens: float, longest_decode: float | None = None,
                  longest_prefill: float | None = None) -> dict[str, float]:
        """Per-operator seconds of one iteration (they sum to iteration_time); for reports and fitting."""
        p, a, d, k = (float(x) for x in _loads(prefill_tokens, prefill_attn_pairs, decode_seqs, decode_kv_tokens))
        c = self.coeffs
        # the padded token and sequence counts of iteration_time (engine profiles' CUDA graphs)
        f = min(p, 1.0)
        d_only = math.ceil(d / c[PAD_DECODE_MULTIPLE]) * c[PAD_DECODE_MULTIPLE]
        d_pow = min(d, 1.0) * c[PAD_MIXED_DECODE_MIN] * 2.0 ** math.ceil(math.log2(max(d, c[PAD_MIXED_DECODE_MIN]) / c[PAD_MIXED_DECODE_MIN]) - 1e-9)
        p_pow = f * c[PAD_MIXED_PREFILL_MIN] * 2.0 ** math.ceil(math.log2(max(p, c[PAD_MIXED_PREFILL_MIN]) / c[PAD_MIXED_PREFILL_MIN]) - 1e-9)
        g = c[PAD_MIXED_POW2]
        d_graph = (1 - f) * d_only + f * (g * d_pow + (1 - g) * d)
        t = d_graph + f * (g * p_pow + (1 - g) * p)
        s = (1 - f) * d_only + f * (d + 1.0)
        lng = k / max(d, 1.0) if longest_decode is None else float(longest_decode)
        kk = d_graph / c[DECODE_SPLIT_UNIT]
        chunk = c[DECODE_SPLIT_CHUNK_1 + int(kk) - 1] if kk in (1.0, 2.0, 3.0, 4.0) else 0.0
        strag = c[DECODE_SPLIT_LONGEST_S_PER_TOKEN] * min(lng, chunk) if chunk > 0 else c[DECODE_LONGEST_S_PER_TOKEN] * lng
        lf, lw = t * c[LIN_FLOP_S_PER_TOKEN], min(t, 1.0) * c[LIN_WEIGHT_S]
        lp = f * c[PREFILL_LONGEST_S_PER_TOKEN] * max(0.0, -1.0 if longest_prefill is None else float(longest_prefill))
        return {
            "linear": max(lf, lw) + c[LINEAR_MIN_SHARE] * min(lf, lw),
            "moe": max(t * c[MOE_FLOP_S_PER_TOKEN], c[MOE_EXPERTS] * (1.0 - c[MOE_MISS] ** t) * c[MOE_EXPERT_S]),
            "attn_prefill": max(a * c[ATTN_PREFILL_FLOP_S_PER_PAIR], p * c[ATTN_PREFILL_BYTES_S_PER_TOKEN], lp),
            "attn_decode": max(k * c[ATTN_DECODE_FLOP_S_PER_KV], k * c[ATTN_DECODE_BYTES_S_PER_KV]),
            "attn_decode_straggler": strag,
            "lm_head": max(s * c[LMHEAD_FLOP_S_PER_SEQ], min(s, 1.0) * c[LMHEAD_WEIGHT_S]),
            "tp_comm": t * c[ALLREDUCE_S_PER_TOKEN] + min(t, 1.0) * c[ALLREDUCE_FIXED_S],
            "overhead": c[OVERHEAD_S] + (d + f) * c[PER_SEQ_S],
            "elementwise": t * c[ELEMENTWISE_S_PER_TOKEN],
        }

    def prefill_time(self, prompt_tokens: int, cached_tokens: int = 0, chunk_size: int | None = None) -> float:
        """Seconds to prefill one prompt alone (prefix-cached tokens skipped), in chunks if given."""
        if prompt_tokens < 0 or cached_tokens < 0 or cached_tokens > prompt_tokens:
            raise HwModelError(f"prefill_time: need 0 <= cached_tokens <= prompt_tokens, got {cached_tokens}, {prompt_tokens}")
        if chunk_size is not None and chunk_size < 1:
            raise HwModelError(f"prefill_time: chunk_size must be >= 1, got {chunk_size}")
        new = prompt_tokens - cached_tokens
        step = new if chunk_size is None else chunk_size
        total, ctx = 0.0, cached_tokens
        while new > 0:
            n = min(step, new)
            total += self.iteration_time(n, attn_pairs(n, ctx), 0, 0)
            ctx, new = ctx + n, new - n
        return total

    def decode_time(self, batch: int, context_tokens: float) -> float:
        """Seconds for one decode iteration of `batch` sequences holding `context_tokens` KV in total."""
        return self.iteration_time(0, 0, batch, context_tokens)


def prefill_time(model: str | Model, gpu: str | GPU, prompt_tokens: int, tp: int = 1,
                 calibration: Calibration | None = None, cached_tokens: int = 0, chunk_size: int | None = None) -> float:
    """Convenience: StepTimeModel(model, gpu, tp, calibration).prefill_time(...)."""
    return StepTimeModel(model, gpu, tp, calibration).prefill_time(prompt_tokens, cached_tokens, chunk_size)


def decode_time(model: str | Model, gpu: str | GPU, batch: int, context_tokens: float, tp: int = 1,
                calibration: Calibration | None = None) -> float:
    """Convenience: StepTimeModel(model, gpu, tp, calibration).decode_time(batch, context_tokens)."""
    return StepTimeModel(model, gpu, tp, calibration).decode_time(batch, context_tokens)
