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
    "decode_split_chunk_tokens": (float, 1.0),
    "decode_split_below_seqs": (float, 0.0),
    "pad_decode_multiple": (float, 1.0),
    "pad_mixed_pow2": (bool, 0.0),
    "pad_mixed_decode_min": (float, 1.0),
    "pad_mixed_prefill_min": (float, 1.0),
}


@dataclass(frozen=True)
class EngineProfile:
    """One engine's terms of the step-time model (units: seconds, tokens, sequences).

    overhead_s / layer_overhead_s / per_seq_overhead_s: fixed time per iteration / per decoder layer
    per iteration / per scheduled sequence (replace the calibration's).
    linear_scale, prefill_attn_scale, decode_kv_read_scale: multipliers of the calibrated linear
    (+ elementwise), prefill-attention and decode-attention (KV read) times.
    decode_longest_s_per_token_layer: straggler, seconds per context token of the longest decoding
    sequence per layer (0 = split-KV kernel, time follows the KV read alone);
    decode_split_chunk_tokens / decode_split_below_seqs: the kernel splits the KV into chunks of this
    many tokens (capping the straggler) when the padded decode batch has fewer sequences than this.
    pad_decode_multiple: decode-only batches padded to a multiple of this (CUDA-graph capture sizes);
    pad_mixed_pow2: batches with prefill padded to powers of two (decodes >= pad_mixed_decode_min,
    prefill tokens >= pad_mixed_prefill_min).
    """

    name: str
    overhead_s: float
    layer_overhead_s: float
    per_seq_overhead_s: float
    linear_scale: float = 1.0
    prefill_attn_scale: float = 1.0
    decode_kv_read_scale: float = 1.0
    decode_longest_s_per_token_layer: float = 0.0
    decode_split_chunk_tokens: float = 1.0
    decode_split_below_seqs: float = 0.0
    pad_decode_multiple: float = 1.0
    pad_mixed_pow2: bool = False
    pad_mixed_decode_min: float = 1.0
    pad_mixed_prefill_min: float = 1.0
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
