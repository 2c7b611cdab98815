"""MoE expert costs for expert-placement decisions: per-expert FFN time and expected experts touched.

Why: expert placement balances per-GPU expert work; the caller sums expert_ffn_time over the
experts a GPU hosts (and adds all-to-all time from hwmodels.comm) to get that GPU's MoE layer time.
"""

from __future__ import annotations

import numpy as np

from .calibration import Calibration, default_calibration
from .catalog import GPU, Model, get_gpu, get_model
from .errors import HwModelError


def _model_moe(model: str | Model) -> Model:
    m = get_model(model)
    if not m.is_moe:
        raise HwModelError(f"{m.name} is a dense model: it has no experts")
    return m


def expert_ffn_time(model: str | Model, gpu: str | GPU, tokens_per_expert, calibration: Calibration | None = None):
    """Seconds for ONE routed expert's FFN GEMMs (gate, up, down) in one MoE layer, whole expert on one GPU.

    tokens_per_expert: array (any shape) of token counts routed to the expert. An expert with no
    tokens costs 0 (its weights are not read); otherwise max(GEMM FLOP time, weight + activation
    bytes time) at the calibrated grouped-GEMM efficiencies (moe_flops_eff, moe_mem_eff).
    Per-GPU sums are the caller's business (expert_group_time adds the per-call latency).
    """
    m, g = _model_moe(model), get_gpu(gpu)
    cal = default_calibration() if calibration is None else calibration
    n = np.asarray(tokens_per_expert, dtype=np.float64)
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise HwModelError(f"expert_ffn_time: tokens_per_expert must be finite and >= 0, got {tokens_per_expert!r}")
    flops = 2.0 * m.expert_params * n
    act_bytes = n * (2 * m.hidden + 2 * m.moe_intermediate) * m.dtype_bytes  # in/out rows + intermediate
    bytes_ = np.where(n > 0, m.expert_params * m.linear_dtype_bytes, 0.0) + act_bytes
    t = np.maximum(flops / (g.flops(m.linear_dtype_bytes) * cal.moe_flops_eff), bytes_ / (g.hbm_bw * cal.moe_mem_eff))
    return float(t) if t.ndim == 0 else t


def expert_group_time(model: str | Model, gpu: str | GPU, tokens_per_expert, calibration: Calibration | None = None):
    """Seconds for one GPU's experts in one MoE layer (one grouped GEMM call): the sum of
    expert_ffn_time over the last axis of tokens_per_expert plus Calibration.moe_latency_s when any
    expert has tokens (measured: hwmodels/calibration/expert_ffn.csv)."""
    cal = default_calibration() if calibration is None else calibration
    n = np.asarray(tokens_per_expert, dtype=np.float64)
    if n.ndim == 0:
        raise HwModelError("expert_group_time: tokens_per_expert must have an experts axis (last)")
    per = expert_ffn_time(model, gpu, n, cal)
    t = np.sum(per, axis=-1) + np.where(np.sum(n, axis=-1) > 0, cal.moe_latency_s, 0.0)
    return float(t) if np.ndim(t) == 0 else t


def expected_experts_touched(model: str | Model, tokens):
    """Expected distinct routed experts per MoE layer hit by `tokens` tokens under uniform top-k routing.

    E * (1 - (1 - k/E)^tokens) <= min(E, k * tokens); the weight-read term of hwmodels.steptime.
    """
    m = _model_moe(model)
    t = np.asarray(tokens, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise HwModelError(f"expected_experts_touched: tokens must be finite and >= 0, got {tokens!r}")
    out = m.experts * (1.0 - (1.0 - m.top_k / m.experts) ** t)
    return float(out) if out.ndim == 0 else out
