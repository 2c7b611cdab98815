"""Engine profiles: what a serving engine adds to the per-operator step-time model.

The calibration (hwmodels.calibration) says how fast each operator class runs on a GPU. An engine
profile says how one engine runs them: its fixed costs per iteration, per layer and per sequence
(host scheduling, kernel launches, the minimum duration of unfused kernels), how its kernels
compare with the calibrated ones, its decode-attention kernel (with split-KV, time follows the KV
read; without it, the longest sequence is a straggler) and the CUDA-graph padding of its batches.

Profiles live in hwmodels/data/engine_profiles.toml, one table each, every number with its source:

  reference  the reference engine of hwmodels/validate (plain PyTorch, FlashAttention-2 varlen,
             CUDA graphs), fitted on its H200 measurements (python -m hwmodels.validate fit)
  vllm       vLLM (fused kernels, CUDA graphs, split-KV decode attention), fitted on the published
             measurements of hwmodels/data/published_results.toml

``hwmodels.build_coeffs(..., profile=NAME)`` folds a profile into the coefficient vector.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from ._data import read_toml, sourced
from .errors import HwModelError

PROFILES_FILE = "engine_profiles.toml"

FIELDS: dict[str, tuple[type, float]] = {  # field: (kind, minimum)
    "overhead_s": (float, 0.0),
    "layer_overhead_s": (float, 0.0),
    "per_seq_overhead_s": (float, 0.0),
    "linear_scale": (float, 0.0),
    "prefill_attn_scale": (float, 0.0),
    "decode_kv_read_scale": (float, 0.0),
    "decode_longest_s_per_token_layer": (float, 0.0),
    "decode_split_longest_s_per_token_layer": (float, 0.0),
    "decode_split_kv_tokens": (float, 0.0),
    "decode_split_sm_slots": (float, 0.0),
    "linear_min_share": (float, 0.0),
    "prefill_longest_s_per_token_layer": (float, 0.0),
    "pad_decode_multiple": (float, 1.0),
    "pad_mixed_pow2": (bool, 0.0),
    "pad_mixed_decode_min": (float, 1.0),
    "pad_mixed_prefill_min": (float, 1.0),
    "moe_expert_scale": (float, 0.0),
    "fp8_gemm_scale": (float, 0.0),
    "frontend_s_per_request": (float, 0.0),
}


@dataclass(frozen=True)
class EngineProfile:
    """One engine's terms of the step-time model (units: seconds, tokens, sequences).

    overhead_s / layer_overhead_s / per_seq_overhead_s: fixed time per iteration / per decoder layer
    per iteration / per scheduled sequence (replace the calibration's).
    linear_scale, prefill_attn_scale, decode_kv_read_scale: multipliers of the calibrated linear
    (+ elementwise), prefill-attention and decode-attention (KV read) times.
    decode_longest_s_per_token_layer: straggler, seconds per context token of the longest decoding
    sequence per layer when the decode kernel does not split the KV (0 = no straggler: time follows
    the KV read alone); decode_split_longest_s_per_token_layer: the same when it splits the KV, on
    at most one split-KV chunk. decode_split_kv_tokens / decode_split_sm_slots: the max_seqlen_k the
    engine passes to FlashAttention-2 and 2 x SMs; with the model's KV heads they give the chunk per
    padded decode count (split_chunk_table; decode_split_kv_tokens 0 = the kernel never splits).
    linear_min_share: GEMM time = max(FLOP, weight) + this x min(FLOP, weight) (0 = plain roofline).
    prefill_longest_s_per_token_layer: prefill attention takes at least this x the longest prefill
    context (kv + chunk) per layer (FlashAttention's prefill kernel: one CTA per query block reads
    the whole prefix; 0 = no such floor).
    pad_decode_multiple: decode-only batches padded to a multiple of this (CUDA-graph capture sizes);
    pad_mixed_pow2: batches with prefill padded to powers of two (decodes >= pad_mixed_decode_min,
    prefill tokens >= pad_mixed_prefill_min).
    moe_expert_scale: multiplier of the calibrated routed-expert time (weight streaming and GEMM FLOPs
    of the touched experts): the engine's fused MoE kernel against the calibrated grouped GEMMs.
    fp8_gemm_scale: multiplier of the GEMM FLOP time of linear layers served in FP8 (W8A8): the
    engine's FP8 GEMMs (with their activation quantization) against the FP8 peak x the calibrated
    GEMM efficiency.
    frontend_s_per_request: CPU seconds the engine's API server spends on each request before the
    scheduler sees it (HTTP, tokenization), shared among the requests in flight as one event loop
    shares its CPU (processor sharing: a burst of n reaches the scheduler after about n x this).
    Only hwmodels.validate's replay of published client-side benchmarks uses it; the environments
    start a request's clock when it reaches the scheduler.
    """

    name: str
    overhead_s: float
    layer_overhead_s: float
    per_seq_overhead_s: float
    linear_scale: float = 1.0
    prefill_attn_scale: float = 1.0
    decode_kv_read_scale: float = 1.0
    decode_longest_s_per_token_layer: float = 0.0
    decode_split_longest_s_per_token_layer: float = 0.0
    decode_split_kv_tokens: float = 0.0
    decode_split_sm_slots: float = 0.0
    linear_min_share: float = 0.0
    prefill_longest_s_per_token_layer: float = 0.0
    pad_decode_multiple: float = 1.0
    pad_mixed_pow2: bool = False
    pad_mixed_decode_min: float = 1.0
    pad_mixed_prefill_min: float = 1.0
    moe_expert_scale: float = 1.0
    fp8_gemm_scale: float = 1.0
    frontend_s_per_request: float = 0.0
    description: str = dataclasses.field(default="", compare=False)
    sources: tuple = dataclasses.field(default=(), compare=False, repr=False)


@lru_cache(maxsize=None)
def _load() -> dict[str, EngineProfile]:
    raw = read_toml(PROFILES_FILE)
    out = {}
    for name, table in raw.items():
        where = f"{PROFILES_FILE} [{name}]"
        if not isinstance(table, dict):
            raise HwModelError(f"{where}: expected a table")
        unknown = set(table) - set(FIELDS) - {"description"}
        if unknown:
            raise HwModelError(f"{where}: unknown fields {sorted(unknown)}; expected {sorted(FIELDS)}")
        vals, srcs = {}, []
        for k, (kind, lo) in FIELDS.items():
            v = sourced(table, k, where, kind, None if kind is bool else lo)
            vals[k] = v.value
            srcs.append((k, v.source))
        out[name] = EngineProfile(name=name, description=str(table.get("description", "")), sources=tuple(srcs), **vals)
    return out


def list_profiles() -> list[str]:
    return sorted(_load())


def get_profile(name: "str | EngineProfile") -> EngineProfile:
    """A profile of hwmodels/data/engine_profiles.toml by name (HwModelError naming the known ones)."""
    if isinstance(name, EngineProfile):
        return name
    profiles = _load()
    if name not in profiles:
        raise HwModelError(f"unknown engine profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]


def fa2_num_splits(batch_nheads_mblocks: int, sm_slots: int, num_n_blocks: int, max_splits: int = 128) -> int:
    """FlashAttention-2's split-KV count (flash_api.cpp ``num_splits_heuristic``, as PyTorch's
    aten/src/ATen/native/transformers/cuda/flash_attn/flash_api.cpp ships it): 1 when the CTAs
    almost fill the GPU (>= 0.8 x sm_slots), else the fewest splits whose wave efficiency is
    >= 0.85 x the best. sm_slots is 2 x SMs there."""
    if batch_nheads_mblocks >= 0.8 * sm_slots:
        return 1
    max_splits = min(max_splits, sm_slots, num_n_blocks)

    def cdiv(a: int, b: int) -> int:
        return -(-a // b)

    def eligible(s: int) -> bool:
        return s == 1 or cdiv(num_n_blocks, s) != cdiv(num_n_blocks, s - 1)

    eff = []
    for s in range(1, max_splits + 1):
        w = batch_nheads_mblocks * s / sm_slots
        eff.append(w / -(-w // 1) if eligible(s) else 0.0)
    best = max(eff)
    for s in range(1, max_splits + 1):
        if eligible(s) and eff[s - 1] >= 0.85 * best:
            return s
    return 1


SPLIT_TABLE_ENTRIES = 4  # padded decode counts unit x 1..4 (hwmodels.steptime DECODE_SPLIT_CHUNK_1..4)
FA2_SPLITKV_BLOCK_N = 128  # FlashAttention-2 split-KV kernel, head_dim <= 128: kBlockN = 128 (flash_api.cpp)


def split_chunk_table(profile: EngineProfile, kv_heads: int) -> list[float]:
    """Split-KV chunk (tokens) of a decode batch padded to k x profile.pad_decode_multiple sequences,
    k = 1..4; 0 where the kernel does not split. Decode with GQA runs swapped (seqlen_q = group,
    heads = KV heads: one query block), so the CTAs are padded sequences x KV heads, and a split covers
    ceil(blocks / splits) blocks of 128 tokens of max_seqlen_k. Raises HwModelError when a batch past
    the table would still split (the table would be too short for this model)."""
    if profile.decode_split_kv_tokens <= 0:
        return [0.0] * SPLIT_TABLE_ENTRIES
    if profile.decode_split_sm_slots < 1:
        raise HwModelError(f"engine profile {profile.name!r}: decode_split_sm_slots must be >= 1 when "
                           f"decode_split_kv_tokens is set, got {profile.decode_split_sm_slots}")
    nb = -(-int(profile.decode_split_kv_tokens) // FA2_SPLITKV_BLOCK_N)
    slots, unit = int(profile.decode_split_sm_slots), int(profile.pad_decode_multiple)
    out = []
    for k in range(1, SPLIT_TABLE_ENTRIES + 2):
        s = fa2_num_splits(k * unit * kv_heads, slots, nb)
        if k > SPLIT_TABLE_ENTRIES:
            if s > 1:
                raise HwModelError(f"engine profile {profile.name!r}: FlashAttention would still split the KV "
                                   f"at {k * unit} decode sequences x {kv_heads} KV heads; the split table "
                                   f"covers {SPLIT_TABLE_ENTRIES} x {unit}")
            break
        out.append(float(-(-nb // s) * FA2_SPLITKV_BLOCK_N) if s > 1 else 0.0)
    return out
