"""Static configuration of the simulated serving engine, shared by every replica of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numba as nb
import numpy as np

import hwmodels

# The environments claim vLLM's behaviour: their step times use vLLM's engine profile
# (hwmodels/data/engine_profiles.toml [vllm]; README, Fidelity).
DEFAULT_PROFILE = "vllm"

# The step-time model lives in hwmodels; the simulator compiles that same function.
step_time = nb.njit(cache=True)(hwmodels.iteration_time)


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
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1):
            raise ValueError(f"capacity_blocks must be an integer >= 1 (KV blocks per replica), got {cap!r}")
        if cap is None:
            cap = hwmodels.kv_capacity_blocks(model, gpu, self.tp, self.mem_frac, self.block_size)
        if cap < 1:
            raise ValueError(
                f"{self.model} on {self.tp}x {self.gpu} at mem_frac={self.mem_frac} leaves no KV "
                f"memory (capacity {cap} blocks)"
            )
        max_len = model.context_length if self.max_model_len is None else self.max_model_len
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 2:
            raise ValueError(f"EngineSpec.max_model_len must be an integer >= 2, got {self.max_model_len!r}")
        metric = slo_metric_code(self.slo_metric)
        slo_ttft, slo_tpot = default_slo(model.name)
        for name in ("slo_ttft_s", "slo_tpot_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"EngineSpec.{name} must be > 0 seconds, got {v!r}")
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
