"""Hardware distributions of KVAdmission-v0: which engines (GPU x model x KV capacity) training samples.

Issue 21 asks that a training scenario sample "where it applies GPU, model and capacity". A
``KVAdmissionVecEnv`` steps one engine (its kernels take one ``Engine``), so a batch over several
engines is a concatenation of native batches, one per drawn engine (``agents.family_vec.FamilyVecEnv``,
``train.py --hardware NAME[:DRAWS[:SEED]]``): this module says which engines a distribution holds and
draws them, seeded, so that the run record can name the seed and the engines.

An engine of a distribution is a (model, GPU, tensor parallelism) that fits at the config's ``mem_frac``
(``hwmodels.kv_capacity_blocks`` > 0) times a KV capacity fraction: the share of the catalogue's KV pool
the replica gets (``capacity_blocks`` = round(fraction x the pool), as when other tenants or a lower
``gpu_memory_utilization`` take memory). Loads stay relative to each engine: a load level is a fraction
of the capacity measured on that engine (``envs.core.capacity``), and the SLO is each model's own unless
the config sets one (envs/data/slo.toml).

The engines of ``nvidia-v1`` are those the step-time model has been checked on against published vLLM
results (hwmodels/data/published_results.toml: H100 and H200 points of Llama-3.1-8B and -70B); the
leaderboard's hardware transfer rows (``agents.scenarios.KV_HELD_OUT_HARDWARE``: Llama-3.1-8B on an
A100, Mixtral-8x7B on an H200) use a GPU and a model that no distribution here contains (a test keeps
it so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

import hwmodels


@dataclass(frozen=True)
class HardwareDistribution:
    """``engines``: (model, GPU, tensor parallelism) triples; ``capacity_fracs``: shares (0, 1] of each
    engine's KV pool; a draw picks (engine, fraction) pairs uniformly without replacement (``draw_hardware``)."""

    name: str
    engines: tuple[tuple[str, str, int], ...]
    capacity_fracs: tuple[float, ...]
    note: str = ""

    def combos(self) -> list[tuple[str, str, int, float]]:
        return [(m, g, tp, f) for m, g, tp in self.engines for f in self.capacity_fracs]


DISTRIBUTIONS: dict[str, HardwareDistribution] = {
    # Llama-3.1-8B on one H100 or H200, Llama-3.1-70B at TP 2 on H200s or TP 4 on H100s (the smallest TP at
    # which it fits at mem_frac 0.9: 22,266 and 26,754 KV blocks), each at 1/4, 1/2 or all of its KV pool
    # (8B on an H100: 6,525 / 13,050 / 26,099 blocks of 16 tokens). The A100 and every MoE model are left out:
    # the hardware transfer rows hold them out.
    "nvidia-v1": HardwareDistribution(
        "nvidia-v1",
        (("Llama-3.1-8B", "H100-SXM", 1), ("Llama-3.1-8B", "H200-SXM", 1),
         ("Llama-3.1-70B", "H200-SXM", 2), ("Llama-3.1-70B", "H100-SXM", 4)),
        (0.25, 0.5, 1.0),
        note="H100/H200 x Llama-3.1-8B/70B x KV fraction 0.25/0.5/1",
    ),
}


@dataclass(frozen=True)
class HardwareDraw:
    """One drawn engine: the config fields it sets (``env_kwargs``) and what the run record says."""

    model: str
    gpu: str
    tp: int
    capacity_frac: float
    capacity_blocks: int  # KV blocks of ``block_size`` tokens: round(capacity_frac x the catalogue's pool)

    @property
    def name(self) -> str:
        """A short id, e.g. ``llama3.1-8b-h100-sxm-tp1-kv0.5``."""
        return f"{self.model.lower().replace('llama-', 'llama')}-{self.gpu.lower()}-tp{self.tp}-kv{self.capacity_frac:g}"

    def env_kwargs(self) -> dict[str, Any]:
        return {"model": self.model, "gpu": self.gpu, "tp": self.tp, "capacity_blocks": self.capacity_blocks}

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "capacity_frac": self.capacity_frac, **self.env_kwargs()}


def parse_hardware(spec: str) -> tuple[str, int, int]:
    """``NAME[:DRAWS[:SEED]]`` as (distribution name, draws, seed); draws default to every engine of the
    distribution, seed to 0. ``ValueError`` (one line, naming ``spec``) for an unknown name, a part that
    is not an integer, draws < 1 or more than the distribution holds, or a seed < 0."""
    name, *rest = spec.split(":")
    if name not in DISTRIBUTIONS:
        raise ValueError(f"--hardware {spec}: unknown distribution {name!r}; known: {', '.join(DISTRIBUTIONS)} "
                         "(envs.kv_admission.hardware.DISTRIBUTIONS)")
    if len(rest) > 2:
        raise ValueError(f"--hardware {spec}: expected NAME[:DRAWS[:SEED]]")
    try:
        nums = [int(x) for x in rest]
    except ValueError:
        raise ValueError(f"--hardware {spec}: DRAWS and SEED must be integers (NAME[:DRAWS[:SEED]])") from None
    total = len(DISTRIBUTIONS[name].combos())
    draws = nums[0] if nums else total
    seed = nums[1] if len(nums) > 1 else 0
    if not 1 <= draws <= total:
        raise ValueError(f"--hardware {spec}: DRAWS must be in 1..{total} (the engines x capacity fractions of {name})")
    if seed < 0:
        raise ValueError(f"--hardware {spec}: SEED must be >= 0")
    return name, draws, seed


def draw_hardware(name: str, draws: int, seed: int, mem_frac: float = 0.9, block_size: int = 16) -> list[HardwareDraw]:
    """``draws`` distinct (engine, capacity fraction) pairs of distribution ``name``: the first ``draws`` of a
    uniform random permutation of its pairs (``numpy.random.default_rng(seed).permutation``; the same seed gives
    the same engines in the same order, and a smaller draw is a prefix of a larger one),
    each with its KV capacity in blocks at ``mem_frac`` (``hwmodels.kv_capacity_blocks``). ``ValueError`` for an
    unknown name or draws outside 1..len(combos); ``hwmodels.HwModelError`` for an engine that does not fit."""
    if name not in DISTRIBUTIONS:
        raise ValueError(f"hardware distribution {name!r}: known: {', '.join(DISTRIBUTIONS)}")
    combos = DISTRIBUTIONS[name].combos()
    if not 1 <= draws <= len(combos):
        raise ValueError(f"hardware distribution {name}: draws must be in 1..{len(combos)}, got {draws}")
    pick = np.random.default_rng(seed).permutation(len(combos))[:draws]  # a smaller draw is a prefix of a larger one
    out = []
    for i in pick:
        model, gpu, tp, frac = combos[int(i)]
        pool = hwmodels.kv_capacity_blocks(hwmodels.get_model(model), hwmodels.get_gpu(gpu), tp, mem_frac, block_size)
        out.append(HardwareDraw(model, gpu, tp, frac, max(1, int(round(frac * pool)))))
    return out


def hardware_record(spec: str, mem_frac: float = 0.9) -> dict[str, Any]:
    """What a run record says of ``--hardware spec``: the distribution, draws, seed and drawn engines."""
    name, draws, seed = parse_hardware(spec)
    return {"distribution": name, "draws": draws, "seed": seed,
            "engines": [d.info() for d in draw_hardware(name, draws, seed, mem_frac)]}
