"""KV-cache sizing the way vLLM does it: bytes per token, and KV blocks left after weights.

Why: admission, preemption and prefix-eviction decisions are all about a fixed pool of KV blocks;
the pool size must be what a real vLLM engine would get on that GPU, or the environments teach
policies for a machine that does not exist. The profile constants and the measured anchors that
check them live in data/vllm_memory.toml.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ._data import read_toml, sourced
from .catalog import GPU, Model, get_gpu, get_model
from .errors import HwModelError
from traces.checks import is_integer

MEMORY_FILE = "vllm_memory.toml"
GIB = 2**30


@dataclass(frozen=True)
class VllmProfile:
    """Per-GPU memory vLLM keeps outside the KV cache (see data/vllm_memory.toml)."""

    cuda_reserve_bytes: float
    activation_dense_bytes: float
    activation_moe_bytes: float
    non_torch_tp1_bytes: float
    non_torch_tpn_bytes: float
    cudagraph_bytes: float


@functools.cache
def vllm_profile() -> VllmProfile:
    """The profile constants from data/vllm_memory.toml."""
    table = read_toml(MEMORY_FILE).get("profile")
    if not isinstance(table, dict):
        raise HwModelError(f"{MEMORY_FILE}: missing [profile] table")
    where = f"{MEMORY_FILE} [profile]"
    return VllmProfile(**{k: float(sourced(table, k, where, float, minimum=0.0).value)
                          for k in VllmProfile.__dataclass_fields__})


def _check_tp(model: Model, tp: int) -> None:
    """vLLM's tensor-parallel constraints: heads split evenly, KV heads split or replicated evenly."""
    if not is_integer(tp) or tp < 1:
        raise HwModelError(f"tp must be a positive integer, got {tp!r}")
    if model.heads % tp:
        raise HwModelError(f"tp={tp} incompatible with {model.name}: heads={model.heads} must be divisible by tp")
    if not model.is_mla and model.kv_heads % tp and tp % model.kv_heads:
        raise HwModelError(f"tp={tp} incompatible with {model.name}: kv_heads={model.kv_heads} "
                           f"must divide tp or be divisible by it (vLLM requirement)")


def kv_heads_per_gpu(model: str | Model, tp: int = 1) -> int:
    """KV heads each TP rank stores; replicated when tp > kv_heads, as vLLM does."""
    m = get_model(model)
    _check_tp(m, tp)
    return max(1, m.kv_heads // tp)


def kv_bytes_per_token(model: str | Model, tp: int = 1) -> int:
    """KV-cache bytes per token held by ONE GPU of a tensor-parallel group.

    GQA/MHA: 2 (K and V) * layers * kv_heads_per_gpu * head_dim * dtype_bytes.
    MLA (DeepSeek-V3): layers * (kv_lora_rank + qk_rope_head_dim) * dtype_bytes; the latent is
    shared by all heads, so every TP rank keeps the whole of it (no division by tp).
    """
    m = get_model(model)
    _check_tp(m, tp)
    if m.is_mla:
        return m.layers * (m.kv_lora_rank + m.qk_rope_head_dim) * m.dtype_bytes
    return 2 * m.layers * kv_heads_per_gpu(m, tp) * m.head_dim * m.dtype_bytes


def usable_gpu_bytes(gpu: str | GPU) -> float:
    """Total memory CUDA reports: measured where available, else datasheet minus the H100 reserve."""
    g = get_gpu(gpu)
    if g.cuda_visible_bytes is not None:
        return g.cuda_visible_bytes
    return g.hbm_bytes - vllm_profile().cuda_reserve_bytes


@dataclass(frozen=True)
class MemoryBreakdown:
    """Per-GPU budget as vLLM's profiler computes it (bytes); kv_bytes may be negative (no fit)."""

    requested_bytes: float
    weights_bytes: float
    activation_bytes: float
    non_torch_bytes: float
    cudagraph_bytes: float
    kv_bytes: float
    kv_bytes_per_block: int
    blocks: int


def memory_breakdown(model: str | Model, gpu: str | GPU, tp: int = 1, mem_frac: float = 0.9,
                     block_size: int = 16, cudagraph_bytes: float | None = None) -> MemoryBreakdown:
    """vLLM's memory accounting for one GPU of a TP group, without raising when nothing fits."""
    m, g = get_model(model), get_gpu(gpu)
    _check_tp(m, tp)
    if not isinstance(mem_frac, (int, float)) or not 0.0 < mem_frac <= 1.0:
        raise HwModelError(f"mem_frac (gpu_memory_utilization) must be in (0, 1], got {mem_frac!r}")
    if not is_integer(block_size) or block_size < 1:
        raise HwModelError(f"block_size must be a positive integer, got {block_size!r}")
    prof = vllm_profile()
    graphs = prof.cudagraph_bytes if cudagraph_bytes is None else float(cudagraph_bytes)
    if graphs < 0 or not math.isfinite(graphs):
        raise HwModelError(f"cudagraph_bytes must be finite and >= 0, got {cudagraph_bytes!r}")
    requested = mem_frac * usable_gpu_bytes(g)
    weights = m.weight_bytes() / tp
    activation = prof.activation_moe_bytes if m.is_moe else prof.activation_dense_bytes
    non_torch = prof.non_torch_tp1_bytes if tp == 1 else prof.non_torch_tpn_bytes
    kv = requested - weights - activation - non_torch - graphs
    per_block = block_size * kv_bytes_per_token(m, tp)
    blocks = int(kv // per_block) if kv > 0 else 0
    return MemoryBreakdown(requested, weights, activation, non_torch, graphs, kv, per_block, blocks)


def kv_capacity_blocks(model: str | Model, gpu: str | GPU, tp: int = 1, mem_frac: float = 0.9,
                       block_size: int = 16, cudagraph_bytes: float | None = None) -> int:
    """KV blocks per GPU that vLLM would allocate (same on every rank of the TP group).

    available = mem_frac * CUDA-visible memory - weights/tp - peak activation - non-torch memory
    [- CUDA graphs, vLLM >= 0.21]; blocks = available // (block_size * kv_bytes_per_token).
    Raises HwModelError when the model does not fit (vLLM: "No available memory for the cache blocks").
    """
    b = memory_breakdown(model, gpu, tp, mem_frac, block_size, cudagraph_bytes)
    if b.blocks < 1:
        name_m, name_g = get_model(model).name, get_gpu(gpu).name
        raise HwModelError(
            f"{name_m} with tp={tp} does not fit on {name_g} at mem_frac={mem_frac}: requested "
            f"{b.requested_bytes / GIB:.2f} GiB, weights {b.weights_bytes / GIB:.2f} GiB, activation "
            f"{b.activation_bytes / GIB:.2f} GiB, non-torch {b.non_torch_bytes / GIB:.2f} GiB leave "
            f"{b.kv_bytes / GIB:.2f} GiB for KV (one block needs {b.kv_bytes_per_block} bytes)")
    return b.blocks
