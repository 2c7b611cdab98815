"""hwmodels: the hardware cost layer of servegym.

Catalogues of accelerators and models (data files, a source per number), vLLM-style KV-cache sizing,
a calibrated per-operator roofline for engine iteration time (numba-compilable), MoE expert and
interconnect costs, cold start and price. Knows nothing of envs, agents or traces.
"""

from .calibration import Calibration, default_calibration, load_calibration
from .catalog import GPU, Model, get_gpu, get_model, list_gpus, list_models
from .coldstart import cold_start_time
from .comm import allreduce_time, alltoall_time, kv_transfer_time, weight_transfer_time
from .errors import HwModelError
from .memory import MemoryBreakdown, kv_bytes_per_token, kv_capacity_blocks, memory_breakdown
from .moe import expected_experts_touched, expert_ffn_time, expert_group_time
from .pricing import price_per_gpu_hour
from .profiles import EngineProfile, get_profile, list_profiles
from .steptime import (COEFF_INDEX, N_COEFFS, StepTimeModel, attn_pairs, build_coeffs, decode_time,
                       iteration_time, prefill_time)

__all__ = [
    "GPU", "Model", "get_gpu", "get_model", "list_gpus", "list_models",
    "kv_bytes_per_token", "kv_capacity_blocks", "memory_breakdown", "MemoryBreakdown",
    "Calibration", "default_calibration", "load_calibration",
    "StepTimeModel", "iteration_time", "build_coeffs", "COEFF_INDEX", "N_COEFFS", "attn_pairs",
    "prefill_time", "decode_time",
    "expert_ffn_time", "expert_group_time", "expected_experts_touched",
    "alltoall_time", "allreduce_time", "kv_transfer_time", "weight_transfer_time",
    "cold_start_time", "price_per_gpu_hour", "HwModelError", "EngineProfile", "get_profile", "list_profiles",
]
