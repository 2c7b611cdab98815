"""Efficiencies and overheads that turn datasheet peaks into realistic operator times.

Why a separate record: the roofline in hwmodels.steptime is exact about FLOPs and bytes but not
about how close kernels get to the peaks; those fractions are fitted on a real H200 by the
calibration helper (python -m hwmodels.calibrate fit), which writes data/calibration_h200.toml.
When that file exists it is the default; otherwise the priors in data/calibration_priors.toml are.
Other GPUs use the same efficiencies against their own peaks.

calibration_h200.toml schema (written by the helper, read by load_calibration):

    [calibration]            # exactly the Calibration fields below, plain floats
    gemm_flops_eff = 0.71
    ...
    [meta]                   # free-form provenance: gpu, date, vLLM/torch versions, held-out error
    source = "fitted on ... measurements, hwmodels/calibration/..."
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._data import DATA_DIR, read_toml, sourced
from .errors import HwModelError
from traces.checks import is_real

PRIORS_FILE = "calibration_priors.toml"
FITTED_FILE = DATA_DIR / "calibration_h200.toml"
EFFICIENCY_FIELDS = ("gemm_flops_eff", "mem_bw_eff", "attn_flops_eff", "attn_mem_eff", "comm_eff",
                     "moe_flops_eff", "moe_mem_eff", "host_copy_eff")
TIME_FIELDS = ("comm_latency_s", "overhead_s", "layer_overhead_s", "per_seq_overhead_s",
               "gemm_latency_s", "moe_latency_s", "host_copy_latency_s", "host_block_latency_s")
COUNT_FIELDS = ("elementwise_passes",)
ALL_FIELDS = EFFICIENCY_FIELDS + TIME_FIELDS + COUNT_FIELDS


def _load_priors() -> dict[str, float]:
    table = read_toml(PRIORS_FILE).get("calibration")
    if not isinstance(table, dict):
        raise HwModelError(f"{PRIORS_FILE}: missing [calibration] table")
    where = f"{PRIORS_FILE} [calibration]"
    return {k: float(sourced(table, k, where, float, minimum=0.0).value) for k in ALL_FIELDS}


_PRIORS = _load_priors()


@dataclass(frozen=True)
class Calibration:
    """Fractions of peak reached by each operator class, and fixed software overheads.

    gemm_flops_eff: linear layers, MoE experts and LM head vs dense tensor FLOP/s.
    mem_bw_eff: weight streaming vs HBM bandwidth.
    attn_flops_eff / attn_mem_eff: attention (prefill FLOPs, decode KV reads).
    comm_eff: collective bus bandwidth vs per-direction link bandwidth; comm_latency_s per collective.
    overhead_s: per engine iteration; layer_overhead_s: per decoder layer per iteration (minimum
    kernel durations); per_seq_overhead_s: per scheduled sequence.

    Terms added by the H200 calibration (python -m hwmodels.calibrate; data in hwmodels/calibration/)
    where the plain roofline missed the measurements. Their priors are neutral (0 s, 0 passes, the
    full host link, the dense-GEMM efficiencies for experts): the uncalibrated roofline.
    moe_flops_eff / moe_mem_eff: grouped expert GEMMs (a slower kernel than dense GEMMs).
    host_copy_eff: pinned host<->device copies vs half of pcie_bw (one direction).
    gemm_latency_s: fixed time of one standalone GEMM (small GEMMs never reach the roofline).
    moe_latency_s: fixed time of one GPU's grouped expert FFN in one MoE layer.
    host_copy_latency_s / host_block_latency_s: a host copy's first block / each further block.
    elementwise_passes: bf16 read+write passes over the [tokens x hidden] activations per layer
    (norms, RoPE, SwiGLU, residual adds), memory-bound at mem_bw_eff.
    """

    gemm_flops_eff: float = _PRIORS["gemm_flops_eff"]
    mem_bw_eff: float = _PRIORS["mem_bw_eff"]
    attn_flops_eff: float = _PRIORS["attn_flops_eff"]
    attn_mem_eff: float = _PRIORS["attn_mem_eff"]
    comm_eff: float = _PRIORS["comm_eff"]
    comm_latency_s: float = _PRIORS["comm_latency_s"]
    overhead_s: float = _PRIORS["overhead_s"]
    layer_overhead_s: float = _PRIORS["layer_overhead_s"]
    per_seq_overhead_s: float = _PRIORS["per_seq_overhead_s"]
    moe_flops_eff: float = _PRIORS["moe_flops_eff"]
    moe_mem_eff: float = _PRIORS["moe_mem_eff"]
    host_copy_eff: float = _PRIORS["host_copy_eff"]
    gemm_latency_s: float = _PRIORS["gemm_latency_s"]
    moe_latency_s: float = _PRIORS["moe_latency_s"]
    host_copy_latency_s: float = _PRIORS["host_copy_latency_s"]
    host_block_latency_s: float = _PRIORS["host_block_latency_s"]
    elementwise_passes: float = _PRIORS["elementwise_passes"]
    source: str = dataclasses.field(default="priors: hwmodels/data/calibration_priors.toml", compare=False)

    def __post_init__(self) -> None:
        for k in EFFICIENCY_FIELDS:
            v = getattr(self, k)
            if not is_real(v) or not 0.0 < v <= 1.0:
                raise HwModelError(f"Calibration.{k} must be in (0, 1] (a fraction of peak), got {v!r}")
        for k in TIME_FIELDS:
            v = getattr(self, k)
            if not is_real(v) or not (v >= 0.0 and math.isfinite(v)):
                raise HwModelError(f"Calibration.{k} must be a finite number of seconds >= 0, got {v!r}")
        for k in COUNT_FIELDS:
            v = getattr(self, k)
            if not is_real(v) or not (v >= 0.0 and math.isfinite(v)):
                raise HwModelError(f"Calibration.{k} must be a finite count >= 0, got {v!r}")

    @classmethod
    def priors(cls) -> "Calibration":
        """The documented priors, ignoring any fitted file."""
        return cls()

    @classmethod
    def ideal(cls) -> "Calibration":
        """Every kernel at peak and no overhead: the physical roofline (a lower bound on time)."""
        return cls(**{k: 1.0 for k in EFFICIENCY_FIELDS}, **{k: 0.0 for k in TIME_FIELDS + COUNT_FIELDS},
                   source="ideal roofline")

    def to_toml(self, meta: dict[str, Any] | None = None) -> str:
        """Serialize in the calibration_h200.toml schema (meta: flat str/number provenance fields)."""
        lines = ["[calibration]"] + [f"{k} = {getattr(self, k)!r}" for k in ALL_FIELDS]
        meta = {"source": self.source} | dict(meta or {})
        lines.append("\n[meta]")
        for k, v in meta.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise HwModelError(f"Calibration.to_toml: meta field '{k}' must be a string or number, got {v!r}")
            lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f"{k} = {_toml_str(v)}")
        return "\n".join(lines) + "\n"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def load_calibration(path: str | Path) -> Calibration:
    """Read a fitted calibration file; unknown or missing fields are errors, not silently ignored."""
    path = Path(path)
    raw = read_toml(path)
    table = raw.get("calibration")
    if not isinstance(table, dict):
        raise HwModelError(f"{path}: missing [calibration] table")
    expected = set(ALL_FIELDS)
    unknown, missing = set(table) - expected, expected - set(table)
    if unknown or missing:
        raise HwModelError(f"{path} [calibration]: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
    for k, v in table.items():
        if not is_real(v):
            raise HwModelError(f"{path} [calibration]: '{k}' must be a number, got {v!r}")
    meta = raw.get("meta", {})
    source = meta.get("source", "") if isinstance(meta, dict) else ""
    try:
        return Calibration(**{k: float(v) for k, v in table.items()}, source=f"{path.name}: {source}".strip())
    except HwModelError as exc:
        raise HwModelError(f"{path}: {exc}") from exc


def default_calibration() -> Calibration:
    """The fitted H200 calibration if data/calibration_h200.toml exists, else the priors."""
    if FITTED_FILE.exists():
        return load_calibration(FITTED_FILE)
    return Calibration.priors()
