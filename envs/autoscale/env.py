"""servegym/Autoscale-v0: how many replicas of each GPU type to run, every control interval.

A cluster of replicas of one model on one or several GPU types (``gpu_types``) behind a
least-loaded router. Every ``interval_s`` simulated seconds (default 30) the policy changes the
number of replicas of each type by -``max_step`` .. +``max_step`` (one ``Discrete`` index packs
the change of every type, mixed radix, type 0 first; masks mark the changes that keep each type
within 0 .. ``max_replicas``; a masked one is clipped to those limits, so plain PPO works too). A new replica bills from the moment it is requested and serves only after its
cold start (``hwmodels.cold_start_time``: the weights streamed from storage at ``storage_bw``
bytes/s plus the engine start, 22.3 s for Llama-3.1-8B from a 7 GB/s NVMe); a removed replica
takes no new requests and drains its running ones (billed meanwhile). Prices from
``hwmodels.price_per_gpu_hour``.

Serving is a fluid model of the replica pools (``envs.autoscale.kernels``) whose every number about
a replica (SLO attainment under utilisation and queue wait, TTFT/TBT quantiles, KV use, queue,
drain time) was measured on the full cluster model (``envs.autoscale.model``). Its error against
the full model on the same arrivals and the same replica schedule is measured by
``python -m agents.autoscale_fidelity`` (``envs.autoscale.full`` holds the comparison). On held-out
day 0, 07:00-08:00 (182,514 requests, the morning ramp), replaying each policy's replica schedule:
``hpa`` (often overloaded) SLO attainment 0.898 fluid vs 0.938 full, TTFT p99 25.1 s vs 19.3 s,
per-interval attainment MAE 0.037; the zoo agent (rarely overloaded) 0.9907 vs 0.9963, TTFT p99
1.26 s vs 0.41 s, MAE 0.006. The fluid model errs on the pessimistic side: it misses more
requests than the full model, most where backlogs form.

Reward per interval: ``-(dollars + slo_penalty x requests that miss the SLO)``, divided by what
the static_peak fleet costs for one interval (so static provisioning earns about -1 a step). ``slo_penalty`` (dollars per missed request) is the swept
knob: evaluation reports every value of it.

Traces: ``bursty`` (the default: a day of the Azure-conversation MMPP under a diurnal profile,
rescaled to ``rate_rps``) and any generator; every episode is one day (``episode_s``): training
days are generator seeds ``trace_seed + i`` for ``i < train_days``, held-out days are seeds
``trace_seed + 1_000_000 + i`` for ``i < test_days``. A trace file (BurstGPT, Azure ...) by path
is split by time (the first ``1 - held_out_frac`` for training) and cut into windows of
``episode_s``.

Baselines compare against two references computed on each episode's own arrivals (the normalized
score): ``static_peak`` (fixed fleet for the training data's peak) = 0 and the DP ``oracle`` = 100.
The oracle's plan needs future arrivals: ``oracle_targets(e)`` hands them out to oracle policies
only; they are never in the observation. The DP starts each interval with an empty queue
(``kernels.oracle_plan``), so below ``slo_penalty`` 0.001 it plans fleets whose backlog the replay carries on:
its plan can then replay worse than ``static_peak`` (bursty held-out days at 0.0005 and below), and the
normalized score of such an episode is NaN; at the scenarios' 0.001 and 0.01 it replays below ``static_peak``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

import hwmodels
import traces
from traces.servegen import is_servegen_dir
from envs.autoscale import kernels as K
from envs.core.workload import TraceUnsuited
from envs.config_check import check_sizes, make_config
from envs.autoscale.model import ReplicaCurves, cache_root, cache_save, replica_curves
from envs.native_vec import NativeVecEnv, VecEnvView, item_features
from envs.vector import NativeVectorEnv
from traces.checks import is_integer, is_real, positive_levels

ENV_ID = "servegym/Autoscale-v0"
DEFAULT_TRACE = "bursty"
DEFAULT_RATE_RPS = 60.0  # mean of the generated day; peaks near 90 requests/s
DEFAULT_PENALTIES = (0.001, 0.01)
TEST_SEED_OFFSET = 1_000_000
# Most memory max_replicas may ask for, checked before anything is built (``check_memory``): the oracle's
# dynamic programme (``kernels.oracle_plan``) keeps four tables of one 8-byte number per fleet (every count
# 0..max_replicas of every GPU type) and interval, and every env of the batch a cold-start and two drain slots
# per replica of each type (``kernels.allocate``). The default (16 per type, two types, 2,880 intervals a day)
# takes 27 MB; max_replicas=10**9 asked numpy for 29.8 GiB of replica slots alone and a MemoryError.
MAX_MEMORY_BYTES = 2**30


@dataclass(frozen=True)
class AutoscaleConfig:
    """Everything that defines a scenario; ``--env-kwargs`` set these fields."""

    trace: str | traces.Trace = DEFAULT_TRACE  # built-in generator name, file path, or a Trace
    split: str = "train"  # "train" | "test" (held-out days / time) | "all"
    window_order: str = "random"  # "random" | "sequential"
    gpu_types: tuple[str, ...] | str = ("H100", "L40S")
    model: str = "Llama-3.1-8B"
    tp: int = 1
    slo_penalty: float | tuple[float, ...] = DEFAULT_PENALTIES  # dollars per missed request
    interval_s: float = 30.0
    bin_s: float = 2.0  # fluid-model time step
    episode_s: float = 86400.0
    rate_rps: float | None = None  # generators: mean arrival rate (default DEFAULT_RATE_RPS)
    rate_scale: float = 1.0  # multiplies every arrival count (files and generators)
    train_days: int = 16  # generator traces: training days (seeds)
    test_days: int = 8
    held_out_frac: float = 0.3  # trace files: held-out share of the duration
    max_replicas: int | tuple[int, ...] = 16
    max_step: int = 4  # replicas added or removed per type per interval
    storage_bw: float | None = None  # bytes/s weights stream at (None: hwmodels' NVMe default)
    engine_init_s: float | None = None
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    slo_metric: str = "tpot"  # SLO check: "tpot" (MLPerf Inference, DistServe) or "p99_tbt" (envs/slo.py)
    attain_target: float = 0.99  # SLO attainment that sizes static_peak and the heuristics' targets
    peak_window_s: float = 60.0  # static_peak sizes for the highest rate over windows this long (or a whole episode)
    trace_seed: int = 0
    trace_params: tuple[tuple[str, Any], ...] = ()
    # DAgger's teacher (teacher_actions): the label moves toward the largest oracle target of this many
    # intervals from now (1: the oracle's own plan; more: the headroom a policy without foresight needs)
    teacher_lookahead: int = 1
    # ... and never a fleet whose SLO-safe capacity is below this multiple of the last 30 s' arrival rate
    # (reference replicas added; 0: off): what the observation shows must be served, whatever the plan knew
    teacher_cover: float = 0.0

    def penalties(self) -> tuple[float, ...]:
        return positive_levels(self.slo_penalty, "Autoscale: slo_penalty (dollars per missed request)")

    def types(self) -> tuple[str, ...]:
        t = (self.gpu_types,) if isinstance(self.gpu_types, str) else tuple(self.gpu_types)
        if not t or not all(isinstance(x, str) for x in t):
            raise ValueError(f"Autoscale: gpu_types must be one or more GPU names, got {self.gpu_types!r}")
        names = [hwmodels.get_gpu(x).name for x in t]
        if len(set(names)) != len(names):
            raise ValueError(f"Autoscale: gpu_types lists a GPU twice: {t!r}")
        return t

    def limits(self) -> tuple[int, ...]:
        G = len(self.types())
        m = self.max_replicas
        v = (m,) * G if isinstance(m, int) else tuple(m)
        if len(v) != G or any(not is_integer(x) or x < 1 for x in v):
            raise ValueError(f"Autoscale: max_replicas must be an int >= 1 or one per GPU type ({G}), got {m!r}")
        return v


def memory_bytes(limits: tuple[int, ...], intervals: int, num_envs: int) -> int:
    """Bytes that ``limits`` (max_replicas per GPU type) take for ``intervals`` decisions an episode and a batch
    of ``num_envs``: the oracle's four [intervals, fleets] tables of 8-byte numbers (``kernels.oracle_plan``;
    fleets = the product of (limit + 1)) and each env's 3 x (largest limit + 1) replica slots of 8 bytes per GPU
    type (``kernels.allocate``: cold-start ends, drain ends twice)."""
    fleets = math.prod(int(m) + 1 for m in limits)
    return 32 * int(intervals) * fleets + 24 * int(num_envs) * len(limits) * (max(int(m) for m in limits) + 1)


def check_memory(cfg: AutoscaleConfig, num_envs: int) -> None:
    """``ValueError`` (one line naming max_replicas, the memory it needs and the largest value per type that
    fits) when :func:`memory_bytes` passes ``MAX_MEMORY_BYTES``, before anything is allocated."""
    limits, K = cfg.limits(), round(cfg.episode_s / cfg.interval_s)
    need = memory_bytes(limits, K, num_envs)
    if need <= MAX_MEMORY_BYTES:
        return
    G = len(limits)
    lo, hi = 0, max(limits)  # the largest m with memory_bytes((m,) * G) within the bound (0 if none)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if memory_bytes((mid,) * G, K, num_envs) <= MAX_MEMORY_BYTES else (lo, mid - 1)
    fix = (f"at most {lo} per type" if lo >= 1 else "none fits: lower episode_s / interval_s or num_envs")
    shown = repr(cfg.max_replicas) if max(limits) < 10**12 else _big(max(limits))
    raise ValueError(f"Autoscale: max_replicas={shown} needs {_big(need // 2**30)} GiB (the oracle's tables: "
                     f"32 bytes x {K:,} intervals x {_big(math.prod(m + 1 for m in limits))} fleets of {G} GPU "
                     f"type{'s' if G > 1 else ''}; replica slots: 24 bytes x {num_envs} env"
                     f"{'s' if num_envs > 1 else ''} x {G} x {_big(max(limits) + 1)}), more than MAX_MEMORY_BYTES "
                     f"(1 GiB): {fix}")


def _big(n: int) -> str:
    """An integer of any size in three significant digits (``8.58e+13``; a 400-digit one as a float overflowed)."""
    if n < 10**6:
        return f"{n:,}"
    e = len(str(n)) - 1
    return f"{n / 10**e:.3g}e+{e:02d}"


def _check(cfg: AutoscaleConfig) -> None:
    pos = ("interval_s", "bin_s", "episode_s", "rate_scale", "held_out_frac", "peak_window_s")
    for name in pos:
        v = getattr(cfg, name)
        if not is_real(v) or not v > 0:
            raise ValueError(f"Autoscale: {name} must be > 0, got {v!r}")
    # A multiple of at least 1: a ratio below 1/2 rounds to 0 within the tolerance (interval_s=1e300 passed
    # as a "multiple" of 0 intervals, then failed in the kernel's typing with a traceback).
    steps = cfg.interval_s / cfg.bin_s  # inf for bin_s=1e-308: round(inf) raised OverflowError
    if not 1 <= steps < math.inf or abs(steps - round(steps)) > 1e-9:
        raise ValueError(f"Autoscale: interval_s ({cfg.interval_s}) must be a multiple (>= 1) of bin_s ({cfg.bin_s})")
    n = cfg.episode_s / cfg.interval_s
    if not n >= 1 or abs(n - round(n)) > 1e-9:
        raise ValueError(f"Autoscale: episode_s ({cfg.episode_s}) must be a multiple (>= 1) of interval_s "
                         f"({cfg.interval_s})")
    for name in ("train_days", "test_days", "max_step", "tp", "teacher_lookahead"):
        v = getattr(cfg, name)
        if not is_integer(v) or v < 1:
            raise ValueError(f"Autoscale: {name} must be an integer >= 1, got {v!r}")
    name = DEFAULT_TRACE if cfg.trace == "default" else cfg.trace
    if isinstance(name, str) and name in traces.BUILTIN_TRACES:  # the days are a generator's seeds
        _check_days(cfg)
    if not is_real(cfg.teacher_cover, finite=True) or not cfg.teacher_cover >= 0:
        raise ValueError(f"Autoscale: teacher_cover must be a finite number >= 0, got {cfg.teacher_cover!r}")
    if not 0 < cfg.attain_target < 1:
        raise ValueError(f"Autoscale: attain_target must be in (0, 1), got {cfg.attain_target!r}")
    if cfg.held_out_frac >= 1:
        raise ValueError(f"Autoscale: held_out_frac must be < 1, got {cfg.held_out_frac}")
    if (2 * cfg.max_step + 1) ** len(cfg.types()) > 4096:
        raise ValueError(f"Autoscale: (2 max_step + 1)^types = {(2 * cfg.max_step + 1) ** len(cfg.types())} "
                         "actions; lower max_step or use fewer gpu_types")
    cfg.penalties()
    cfg.limits()


def days_bytes(train_days: int, test_days: int, split: str, bins: int) -> int:
    """A lower bound on the bytes a generator trace's days take (``_windows``): the training days' arrival counts
    [train_days, bins] float64 and the split's ([days, bins]: the training, the held-out or both)."""
    days = {"train": train_days, "test": test_days, "all": train_days + test_days}[split]
    return 8 * bins * (train_days + days)


def _check_days(cfg: AutoscaleConfig) -> None:
    """A generator trace's ``train_days`` and ``test_days``: ``ValueError`` (one line) for more training days than
    ``TEST_SEED_OFFSET`` (their seeds ``trace_seed + i`` would reach the held-out days' ``trace_seed +
    TEST_SEED_OFFSET + i``) or days whose counts pass the machine's memory (``envs.config_check.check_sizes``;
    2**40 was a ``MemoryError`` building the list of seeds)."""
    if cfg.train_days > TEST_SEED_OFFSET:
        raise ValueError(f"Autoscale: train_days must be at most {TEST_SEED_OFFSET:,} (TEST_SEED_OFFSET: the training "
                         f"days' generator seeds trace_seed + i would reach the held-out days' trace_seed + "
                         f"{TEST_SEED_OFFSET:,} + i), got {cfg.train_days!r}")
    bins = round(cfg.episode_s / cfg.bin_s)
    check_sizes("Autoscale", {"train_days": cfg.train_days, "test_days": cfg.test_days},
                lambda **days: days_bytes(split=cfg.split, bins=bins, **days), "the generated days' arrival counts")


def _check_cold_start(cfg: AutoscaleConfig, types: tuple[str, ...]) -> None:
    """``ValueError`` (one line) unless every type's cold start (``hwmodels.cold_start_time``) is shorter than
    ``interval_s``, as the oracle behind ``normalized_score`` needs (``kernels.oracle_plan``). It was found at the
    first episode's end, a traceback from the kernel ('oracle: cold start must be shorter than the control
    interval'): Llama-3.1-70B at tp=4 (40.2 s) or storage_bw=1e8 (180.6 s for Llama-3.1-8B) under the default
    30 s interval."""
    for g in types:
        cold = hwmodels.cold_start_time(cfg.model, g, cfg.tp, cfg.storage_bw, cfg.engine_init_s)
        if not cold < cfg.interval_s:
            raise ValueError(
                f"Autoscale: a cold start of {cfg.model} on {cfg.tp}x {g} takes {cold:.4g} s (weights from storage at "
                f"storage_bw, then engine_init_s: hwmodels.cold_start_time), not shorter than interval_s "
                f"({cfg.interval_s:g} s), as the oracle behind normalized_score needs; raise interval_s or storage_bw, "
                "or lower engine_init_s")


@dataclass(frozen=True)
class Scenario:
    """Built, read-only parts shared by every env of a batch (and cached across batches)."""

    pools: K.Pools
    curves: tuple[ReplicaCurves, ...]
    arrivals: np.ndarray  # float64 [W, T]: arrivals per bin of each episode window
    csum: np.ndarray  # float64 [W, T + 1]
    tod0: np.ndarray  # float64 [W]: time of day (s) at each window's start
    window_names: tuple[str, ...]
    init: np.ndarray  # int64 [W, G]: warm fleet at each window's start
    static_targets: np.ndarray  # int64 [G]: static_peak's fleet
    ref_type: int  # cheapest type per SLO-safe request/s
    ref_cap: float  # SLO-safe requests/s of one reference replica
    safe_util: np.ndarray  # [G]
    conc_ref: float  # in-flight requests of one reference replica at its safe utilisation
    reward_unit: float  # dollars of the static_peak fleet for one interval
    peak_rps: float  # static_peak's design rate (training data)
    slo_ttft: float
    slo_tpot: float
    trace_name: str
    unserved: np.ndarray  # int64 [W, 2]: requests of each window failed in the trace / rejected


def _bin_counts(arrival_s: np.ndarray, duration_s: float, bin_s: float) -> np.ndarray:
    T = round(duration_s / bin_s)
    idx = np.floor(arrival_s / bin_s).astype(np.int64)
    return np.bincount(idx[idx < T], minlength=T).astype(np.float64)


def _source_digest() -> str:
    root = Path(traces.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")) + sorted((root / "data").glob("*.toml")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@cache
def _generated_day(name: str, seed: int, duration_s: float, rate: float, params: tuple,
                   bin_s: float, want_lengths: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Arrival counts of one generated day (cached on disk: generating costs seconds)."""
    key = json.dumps([name, seed, duration_s, rate, list(params), bin_s, _source_digest()])
    path = cache_root() / f"day-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npy"
    if not want_lengths and path.exists():
        try:
            return np.load(path), None, None
        except (OSError, ValueError):
            pass
    tr = traces.load_trace(name, seed=seed, duration_s=duration_s, rate_rps=rate, **dict(params))
    counts = _bin_counts(tr.arrival_s, duration_s, bin_s)
    cache_save(path, counts)
    if want_lengths:
        return counts, np.asarray(tr.prompt_tokens), np.asarray(tr.output_tokens)
    return counts, None, None


def _windows(cfg: AutoscaleConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray,
                                              tuple[np.ndarray, np.ndarray], str]:
    """(arrival counts [W, T] of the split, training counts [Wt, T], names, time of day at each
    window's start, training lengths, trace name)."""
    params = tuple(dict(cfg.trace_params).items())
    name = DEFAULT_TRACE if cfg.trace == "default" else cfg.trace
    if isinstance(name, str) and name in traces.BUILTIN_TRACES:
        rate = DEFAULT_RATE_RPS if cfg.rate_rps is None else cfg.rate_rps
        if not rate > 0:
            raise ValueError(f"Autoscale: rate_rps must be > 0, got {rate!r}")
        train_seeds = [cfg.trace_seed + i for i in range(cfg.train_days)]
        test_seeds = [cfg.trace_seed + TEST_SEED_OFFSET + i for i in range(cfg.test_days)]
        seeds = {"train": train_seeds, "test": test_seeds, "all": train_seeds + test_seeds}[cfg.split]
        _, p0, o0 = _generated_day(name, train_seeds[0], cfg.episode_s, rate, params, cfg.bin_s, True)
        day = lambda s: _generated_day(name, s, cfg.episode_s, rate, params, cfg.bin_s, False)[0]
        train = np.stack([day(s) for s in train_seeds])
        arr = np.stack([day(s) for s in seeds])
        names = tuple(f"{name}:seed={s}" for s in seeds)
        return arr, train, names, np.zeros(len(seeds)), (p0, o0), name, np.zeros((len(seeds), 2), np.int64)
    if cfg.rate_rps is None and isinstance(cfg.trace, (str, Path)) and is_servegen_dir(cfg.trace):
        return _servegen_windows(cfg)
    return _file_windows(cfg)


# Training-part lengths a cached ServeGen build keeps: replica_curves reads the first CAL_REQUESTS (3,000) that
# fit the engine's context and KV, so a prefix this long gives the same curves unless over 85% of it did not fit.
_CACHED_LENGTHS = 20_000


def _servegen_windows(cfg: AutoscaleConfig):
    """``_file_windows`` of ServeGen records, cached on disk (``cache_root()``): replaying 14 days of a model's
    records costs minutes (about 120 s for m-small on the 2-core box), every process of a training run or a
    leaderboard would pay it. Keyed by the records' SHA-256 (``traces.servegen.records_sha256``), every field
    ``_file_windows`` reads and the traces package's source; the training lengths are kept as their first
    ``_CACHED_LENGTHS``."""
    from traces.servegen import records_sha256

    key = json.dumps([records_sha256(cfg.trace), list(map(list, dict(cfg.trace_params).items())), cfg.split,
                      cfg.episode_s, cfg.bin_s, cfg.held_out_frac, cfg.model, _source_digest()], default=str)
    path = cache_root() / f"servegen-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
    try:
        with np.load(path) as z:
            return (z["arr"].astype(np.float64), z["train"].astype(np.float64), tuple(str(x) for x in z["names"]),
                    z["tod0"], (z["prompt"], z["output"]), str(z["trace_name"]), z["unserved"])
    except (OSError, ValueError, KeyError):
        pass
    arr, train, names, tod0, (prompt, output), trace_name, unserved = _file_windows(cfg)
    # arrival counts per bin are whole numbers (_bin_counts): int32 holds them exactly in half the bytes
    cache_save(path, {"arr": arr.astype(np.int32), "train": train.astype(np.int32), "names": np.asarray(names),
                      "tod0": tod0, "prompt": prompt[:_CACHED_LENGTHS], "output": output[:_CACHED_LENGTHS],
                      "trace_name": np.asarray(trace_name), "unserved": unserved})
    return arr, train, names, tod0, (prompt[:_CACHED_LENGTHS], output[:_CACHED_LENGTHS]), trace_name, unserved


def _file_windows(cfg: AutoscaleConfig):
    """``_windows`` of a trace file or folder (a ``Trace`` object too)."""
    params = tuple(dict(cfg.trace_params).items())
    if cfg.rate_rps is not None:
        if isinstance(cfg.trace, (str, Path)) and is_servegen_dir(cfg.trace):
            raise ValueError(f"Autoscale: rate_rps applies to generated traces; ServeGen records {cfg.trace} take "
                             f"their mean rate as trace_params={{'rate_rps': {cfg.rate_rps:g}}}")
        raise ValueError("Autoscale: rate_rps applies to generated traces; scale a trace file with rate_scale")
    tr = cfg.trace if isinstance(cfg.trace, traces.Trace) else traces.load_trace(cfg.trace, **dict(params))
    # Requests the trace marks failed, or longer than the model's context (which the engine
    # rejects at arrival, envs.core.replica.rejected_at_arrival), load no replica: they are
    # counted per window and left out of the arrival counts.
    context = hwmodels.get_model(cfg.model).context_length

    def unserved(t: traces.Trace) -> tuple[np.ndarray, np.ndarray]:
        failed = np.zeros(len(t), bool) if t.failed is None else np.asarray(t.failed)
        need = np.asarray(t.prompt_tokens) + np.maximum(np.asarray(t.output_tokens), 1)
        return failed, ~failed & (need > context)

    train_part, test_part = traces.split(tr, cfg.held_out_frac)
    cut = tr.duration_s * (1.0 - cfg.held_out_frac)

    def cut_windows(part: traces.Trace, offset: float, label: str) -> tuple[list, list, list]:
        if part.duration_s < cfg.episode_s:
            message = (
                f"Autoscale: episode_s={cfg.episode_s:g} is longer than the {label} part of trace "
                f"{tr.meta.name!r} ({part.duration_s:.0f} s, held_out_frac={cfg.held_out_frac:g}); set episode_s "
                f"(a multiple of interval_s), give a longer trace (e.g. trace_params days= for ServeGen records), or "
                f"{'raise' if label == 'test' else 'lower'} held_out_frac")
            # every split cuts the train part into episodes; test and all the held-out part too
            share = 1.0 - cfg.held_out_frac if cfg.split == "train" else min(1.0 - cfg.held_out_frac, cfg.held_out_frac)
            if share <= 0:  # no held-out part at all: the configuration's fault, not the trace's
                raise ValueError(message)
            parts = "its train part" if cfg.split == "train" else "each of its train and held-out parts"
            raise TraceUnsuited(message, f"at least {math.ceil(cfg.episode_s / share):,} s of arrivals (one "
                                f"{cfg.episode_s:,.0f} s episode in {parts}, held_out_frac={cfg.held_out_frac:g})",
                                f"spans {tr.duration_s:,.0f} s")
        n = int(part.duration_s // cfg.episode_s)
        counts, names, tod, lost = [], [], [], []
        for i in range(n):
            w = traces.window(part, i * cfg.episode_s, (i + 1) * cfg.episode_s)
            f, r = unserved(w)
            counts.append(_bin_counts(w.arrival_s[~f & ~r], cfg.episode_s, cfg.bin_s))
            lost.append((int(f.sum()), int(r.sum())))
            names.append(f"{tr.meta.name}:{label}[{i}]")
            tod.append((offset + i * cfg.episode_s) % 86400.0)
        return counts, names, tod, lost

    c_tr, n_tr, t_tr, l_tr = cut_windows(train_part, 0.0, "train")
    if cfg.split == "train":
        c, n, t, lost = c_tr, n_tr, t_tr, l_tr
    else:
        c_te, n_te, t_te, l_te = cut_windows(test_part, cut, "test")
        c, n, t, lost = ((c_te, n_te, t_te, l_te) if cfg.split == "test"
                         else (c_tr + c_te, n_tr + n_te, t_tr + t_te, l_tr + l_te))
    ok = ~np.asarray(train_part.failed) if train_part.failed is not None else np.ones(len(train_part), bool)
    ok &= np.asarray(train_part.output_tokens) > 0
    # Requests over the context stay in: replica_curves leaves out what the replica rejects (the context and
    # its KV pool, one rule) and counts them in its error (a filter here made it report 0 rejected).
    lengths = (np.asarray(train_part.prompt_tokens)[ok], np.asarray(train_part.output_tokens)[ok])
    return (np.stack(c), np.stack(c_tr), tuple(n), np.asarray(t, np.float64), lengths, tr.meta.name,
            np.asarray(lost, np.int64).reshape(-1, 2))


# Smallest scaled arrival count of a bin (requests) Autoscale plays: 2^-970, so that the count times any fraction
# down to float64's epsilon (2^-52: a share of missed requests) is still a normal number (>= 2^-1022).
COUNT_FLOOR = float(np.finfo(np.float64).tiny / np.finfo(np.float64).eps)


def _check_count_scale(rate_scale: float, *counts: np.ndarray) -> None:
    """``ValueError`` (one line) when ``rate_scale`` scales the smallest nonzero arrival count of a bin in
    ``counts`` (requests per ``bin_s``) below ``COUNT_FLOOR``: the fluid model's counts and the shares of them it
    computes become subnormal floats and lose their precision (rate_scale=5e-324 counted 3.432e-320 requests
    for 3.473e-320; from about 1e-309 overprovision_ratio overflowed to inf). The episode's clock is not at
    stake (bins are fixed; rate_scale scales counts only), so a small rate_scale above this, a nearly idle
    day, is played."""
    pos = np.concatenate([c[c > 0].ravel() for c in counts])
    if pos.size and not pos.min() * rate_scale >= COUNT_FLOOR:
        raise ValueError(f"Autoscale: rate_scale {rate_scale:g} scales a bin's {pos.min():g} arrivals to "
                         f"{pos.min() * rate_scale:.3g} requests; float64 keeps the precision of a count and of its "
                         f"shares only from {COUNT_FLOOR:.3g} (2^-970): raise the rate_scale")


def build_scenario(cfg: AutoscaleConfig) -> Scenario:
    """The scenario of ``cfg``; fields that only steer episodes do not rebuild it."""
    return _build_scenario(replace(cfg, slo_penalty=DEFAULT_PENALTIES, window_order="random"))


@cache
def _build_scenario(cfg: AutoscaleConfig) -> Scenario:
    _check(cfg)
    types = cfg.types()
    _check_cold_start(cfg, types)
    arr, train, names, tod0, lengths, trace_name, unserved = _windows(cfg)
    _check_count_scale(cfg.rate_scale, arr, train)
    arr = arr * cfg.rate_scale
    train = train * cfg.rate_scale
    curves = tuple(
        replica_curves(cfg.model, g, cfg.tp, lengths, cfg.storage_bw, cfg.engine_init_s,
                       cfg.slo_ttft_s, cfg.slo_tpot_s, cfg.trace_seed, cfg.slo_metric)
        for g in types
    )
    from envs.autoscale.model import RHO_GRID
    from envs.core.engine import EngineSpec

    eng = EngineSpec(model=cfg.model, gpu=types[0], tp=cfg.tp, slo_ttft_s=cfg.slo_ttft_s,
                     slo_tpot_s=cfg.slo_tpot_s, slo_metric=cfg.slo_metric).build()
    safe = np.array([c.safe_util(cfg.attain_target) for c in curves])
    mu = np.array([c.capacity_rps for c in curves])
    price_h = np.array([c.price_per_hour for c in curves])
    ref = int(np.argmin(price_h / (mu * safe)))
    ref_cap = float(mu[ref] * safe[ref])
    limits = np.array(cfg.limits(), np.int64)
    pools = K.Pools(
        mu=mu, price_s=price_h / 3600.0, cold=np.array([c.cold_start_s for c in curves]),
        max_n=limits, rho=RHO_GRID.astype(np.float64), delay=curves[0].delay_grid,
        attain=np.stack([c.attain for c in curves]), ttft_q=np.stack([c.ttft_q for c in curves]),
        tbt_q=np.stack([c.tbt_q for c in curves]), kv=np.stack([c.kv_use for c in curves]),
        queued=np.stack([c.queued for c in curves]), running=np.stack([c.running for c in curves]),
        drain=np.stack([c.drain_s for c in curves]), bin_s=float(cfg.bin_s),
        interval_s=float(cfg.interval_s), bins_per_step=round(cfg.interval_s / cfg.bin_s),
        max_step=int(cfg.max_step),
    )
    # static_peak: the reference type sized for the training data's highest windowed rate.
    # A row shorter than the window (episode_s < peak_window_s) has one window, itself: its mean rate (np.convolve's
    # 'valid' mode swapped the two and divided the row's arrivals by the whole window's seconds, understating it).
    wb = max(round(cfg.peak_window_s / cfg.bin_s), 1)
    peak = float(max(np.convolve(row, np.ones(w) / (w * cfg.bin_s), mode="valid").max()
                     for row in train for w in [min(wb, len(row))]))
    need = peak / ref_cap  # a float: rate_scale=1e308 made the peak inf (math.ceil raised OverflowError)
    if not need <= limits[ref]:
        shown = _big(math.ceil(need)) if math.isfinite(need) else "inf"
        raise ValueError(
            f"Autoscale: static_peak needs {shown} replicas of {types[ref]} for the peak of "
            f"{peak:.4g} requests/s (rate_scale={cfg.rate_scale:g}); max_replicas is {limits[ref]} "
            f"(raise max_replicas or lower rate_scale / rate_rps)")
    n_static = math.ceil(need)
    static = np.zeros(len(types), np.int64)
    static[ref] = n_static
    # Every episode starts from the fleet an autoscaler would have left: the reference type
    # sized for the window's first five minutes, warm.
    head = max(round(300.0 / cfg.bin_s), 1)
    init = np.zeros((len(arr), len(types)), np.int64)
    first = arr[:, :head].sum(1) / (head * cfg.bin_s)
    init[:, ref] = np.minimum(np.maximum(np.ceil(first / ref_cap), 1), limits[ref]).astype(np.int64)
    rc = curves[ref]
    conc_ref = float(np.interp(safe[ref], RHO_GRID, rc.queued + rc.running))
    return Scenario(
        pools=pools, curves=curves, arrivals=np.ascontiguousarray(arr),
        csum=np.ascontiguousarray(np.concatenate([np.zeros((len(arr), 1)), np.cumsum(arr, 1)], 1)),
        tod0=tod0, window_names=names, init=init, static_targets=static, ref_type=ref,
        ref_cap=ref_cap, safe_util=safe, conc_ref=conc_ref,
        reward_unit=float(static @ price_h * cfg.interval_s / 3600.0), peak_rps=peak,
        slo_ttft=float(eng.slo_ttft), slo_tpot=float(eng.slo_tpot), trace_name=trace_name, unserved=unserved,
    )


_REFS: dict[tuple, tuple[np.ndarray, float, float]] = {}


@cache
def _kernel_digest() -> str:
    """Digest of the kernels the references are computed by (a change recomputes them)."""
    return hashlib.sha256(Path(K.__file__).read_bytes()).hexdigest()[:16]


def references(sc: Scenario, window: int, penalty: float, n_steps: int) -> tuple[np.ndarray, float, float]:
    """(oracle targets [K, G], static_peak objective, oracle objective) in dollars, for one
    window and penalty. Cached in this process and on disk (``cache_root()``, keyed by every
    input and the kernels' source): the oracle's plan costs seconds per day, and each process of
    a parallel leaderboard or sweep would otherwise recompute it."""
    key = (id(sc), window, penalty, n_steps)
    if key not in _REFS:
        p, a = sc.pools, sc.arrivals[window]
        init = sc.init[window]
        h = hashlib.sha256(json.dumps([window, penalty, n_steps, sc.slo_ttft, _kernel_digest()]).encode())
        for arr in (*p, a, init, sc.static_targets):
            h.update(np.ascontiguousarray(arr).tobytes())
        path = cache_root() / f"refs-{h.hexdigest()[:20]}.npz"
        try:
            with np.load(path) as z:
                _REFS[key] = (z["targets"], float(z["static"]), float(z["oracle"]))
        except (OSError, ValueError, KeyError):
            targets, _ = K.oracle_plan(p, a, init, n_steps, sc.slo_ttft, penalty)
            static = np.repeat(sc.static_targets[None, :], n_steps, 0)
            c_s, m_s, _ = K.run_plan(p, a, init, static, sc.slo_ttft)
            c_o, m_o, _ = K.run_plan(p, a, init, targets, sc.slo_ttft)
            _REFS[key] = (targets, float(c_s + penalty * m_s), float(c_o + penalty * m_o))
            cache_save(path, {"targets": targets, "static": np.array(_REFS[key][1]),
                              "oracle": np.array(_REFS[key][2])})
    return _REFS[key]


class AutoscaleVecEnv(NativeVecEnv):
    """E autoscaled clusters stepped by one kernel call (SB3 VecEnv, no per-env objects).

    Episode selection (``NativeVecEnv.draw_episode``): ``window`` is the day (of the split), the
    knob is ``slo_penalty``. An episode always ends by its time limit (``n_steps`` control
    intervals): truncated, never terminated."""

    env_name = "Autoscale"
    episode_knob = "slo_penalty"
    episodes_independent_of_sweep = True  # the scenario is built for DEFAULT_PENALTIES

    table_metrics = (
        "normalized_score", "cost_usd", "slo_attainment", "gpu_hours", "cold_starts",
        "overprovision_ratio", "ttft_p99_s", "tbt_p99_s", "return_mean",
    )

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        return "slo_penalty", self.config.penalties()

    def __init__(self, num_envs: int = 1, config: AutoscaleConfig | None = None, seed: int | None = None,
                 **kwargs: Any):
        cfg = make_config(AutoscaleConfig, config, kwargs, "Autoscale")
        if isinstance(cfg.gpu_types, list):
            cfg = replace(cfg, gpu_types=tuple(cfg.gpu_types))
        if isinstance(cfg.max_replicas, list):
            cfg = replace(cfg, max_replicas=tuple(cfg.max_replicas))
        cfg = replace(cfg, slo_penalty=cfg.penalties(), trace_params=tuple(dict(cfg.trace_params).items()))
        _check(cfg)
        check_memory(cfg, num_envs)
        self.config = cfg
        self.scenario = sc = build_scenario(cfg)
        check_penalty_range(cfg, sc)
        self.G = len(cfg.types())
        self.n_steps = round(cfg.episode_s / cfg.interval_s)
        n_obs = len(K.GLOBAL_FEATURES) + self.G * len(K.TYPE_FEATURES)
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (n_obs,), np.float32),
                         spaces.Discrete((2 * cfg.max_step + 1) ** self.G))
        E = num_envs
        self.state = K.allocate(E, self.G, int(sc.pools.max_n.max()) + 1)
        self._obs = np.zeros((E, n_obs), np.float64)
        self._mask = np.ones((E, self.n_actions), np.bool_)
        self._penalty = np.zeros(E, np.float64)
        if seed is not None:
            self.seed(seed)

    # --- helpers for policies
    def action_of(self, deltas: np.ndarray) -> np.ndarray:
        """Action indices of per-type replica changes ``deltas`` [E, G] (clipped to +-max_step)."""
        k = self.config.max_step
        d = np.clip(np.asarray(deltas, np.int64), -k, k) + k
        return (d * (2 * k + 1) ** np.arange(self.G)).sum(axis=1)

    def oracle_targets(self, e: int) -> np.ndarray:
        """Privileged: the oracle's plan for env ``e``'s episode (for oracle policies only)."""
        targets, _, _ = references(self.scenario, int(self.state.window[e]), float(self._penalty[e]), self.n_steps)
        return targets

    def teacher_actions(self) -> np.ndarray:
        """Privileged (DAgger's teacher, ``agents/imitation.py``): per env the action [E] (int64) that
        moves each type's serving + starting replicas toward the oracle's target for the current
        interval, at most ``max_step`` per type: how ``kernels.run_plan`` replays the oracle's plan
        (``kernels.follow_plan``), so following these labels from the episode's start plays the
        oracle's objective exactly. With ``teacher_lookahead`` L > 1 the target is each type's largest
        over the plan's next L intervals (this one included); with ``teacher_cover`` c > 0, reference
        replicas are added to it until its SLO-safe capacity (``mu x safe_util`` per type) covers c x the
        arrival rate of the last 30 s (the observation's ``rate_30s``), up to ``max_replicas``. Off the
        oracle's trajectory (after a student's deviation) it steers back toward that fleet; the plan is
        not recomputed. Reads the future arrivals through ``oracle_targets``: never an observation."""
        E, G = self.num_envs, self.G
        cfg, sc = self.config, self.scenario
        L, cover = cfg.teacher_lookahead, cfg.teacher_cover
        safe = sc.pools.mu * sc.safe_util
        span = max(int(30.0 / cfg.bin_s), 1)
        deltas = np.zeros((E, G), np.int64)
        for e in range(E):
            k = min(int(self.state.step[e]), self.n_steps - 1)
            target = self.oracle_targets(e)[k:k + L].max(axis=0)
            if cover > 0:
                now_b = int(self.state.step[e]) * sc.pools.bins_per_step
                rate = K._rate(sc.csum[int(self.state.window[e])], now_b, span, cfg.bin_s)
                short = cover * rate - float(target @ safe)
                if short > 0:
                    r = sc.ref_type
                    target[r] = min(target[r] + math.ceil(short / safe[r] - 1e-9), int(sc.pools.max_n[r]))
            K.follow_plan(self.state, e, target, cfg.max_step, deltas[e])
        return self.action_of(deltas)

    # --- NativeVecEnv hooks
    def _reset_envs(self, envs: np.ndarray) -> None:
        sc = self.scenario
        W = sc.arrivals.shape[0]
        for e in envs:
            w, pen = self.draw_episode(int(e), W, self.config.penalties())
            self._penalty[e] = pen
            K.reset_env(sc.pools, self.state, e, int(w), sc.init[w])
            self._write(e)

    def _write(self, e: int) -> None:
        sc = self.scenario
        w = int(self.state.window[e])
        K.write_obs(sc.pools, self.state, e, sc.csum[w], self._obs, sc.ref_cap, sc.conc_ref,
                    sc.slo_ttft, sc.slo_tpot, sc.reward_unit, sc.tod0[w], self.n_steps, self._penalty[e])
        K.write_mask(sc.pools, self.state, e, self._mask)

    def advance(self) -> None:
        """One kernel call: every env applies its replica change and serves a control interval."""
        sc = self.scenario
        K.step_all(sc.pools, self.state, sc.arrivals, self._actions, sc.slo_ttft, self._penalty,
                   sc.reward_unit, self._rew, self._mask)
        K.write_all(sc.pools, self.state, sc.csum, self._obs, sc.ref_cap, sc.conc_ref, sc.slo_ttft,
                    sc.slo_tpot, sc.reward_unit, sc.tod0, self.n_steps, self._penalty, self._mask)
        self._trunc[:] = self.state.step >= self.n_steps

    def feature_names(self) -> list[str]:
        return item_features(K.GLOBAL_FEATURES, K.TYPE_FEATURES, self.G, "type")

    def action_meanings(self) -> list[str]:
        types = [str(t) for t in self.config.types()]
        k = self.config.max_step
        deltas = np.stack(np.unravel_index(np.arange(self.n_actions), (2 * k + 1,) * len(types))[::-1], 1) - k
        return [" ".join(f"{t}{d:+d}" for t, d in zip(types, row)) for row in deltas]

    def render_text(self, e: int = 0) -> str:
        st, cfg = self.state, self.config
        lines = [f"Autoscale env {e}: day {int(st.window[e])}, interval {int(st.step[e])}/{self.n_steps} "
                 f"({cfg.interval_s:g} s each), slo_penalty {self._penalty[e]:g}, last reward {float(self._rew[e]):.4g}"]
        for g, t in enumerate(cfg.types()):
            lines.append(f"  {t}: serving {int(st.serving[e, g])}, starting (cold start) {int(np.isfinite(st.ready_at[e, g]).sum())}")
        lines.append(f"  legal actions: {np.flatnonzero(self._mask[e]).size} of {self.n_actions}")
        return "\n".join(lines)

    # --- domain metrics
    def episode_metrics(self, e: int) -> dict[str, float]:
        """Metrics of env ``e``'s finished episode (the issue's JSON keys and more)."""
        st, sc, cfg = self.state, self.scenario, self.config
        acc = st.acc[e]
        pen = float(self._penalty[e])
        w = int(st.window[e])
        arrived = acc[K.ACC_ARRIVED]
        cost, missed = acc[K.ACC_COST], acc[K.ACC_MISSED]
        j = cost + pen * missed
        _, j_static, j_oracle = references(sc, w, pen, self.n_steps)
        gap = j_static - j_oracle
        score = 100.0 * (j_static - j) / gap if gap > 1e-9 else float("nan")
        return {
            "cost_usd": float(cost),
            "gpu_hours": float(acc[K.ACC_GPU_S] * cfg.tp / 3600.0),
            "slo_attainment": float(1.0 - missed / arrived) if arrived > 0 else 1.0,
            "cold_starts": float(acc[K.ACC_COLD]),
            "overprovision_ratio": float(acc[K.ACC_CAP_S] / arrived) if arrived > 0 else float("nan"),
            "normalized_score": float(score),
            "objective_usd": float(j),
            "static_peak_objective_usd": float(j_static),
            "oracle_objective_usd": float(j_oracle),
            "requests": float(arrived),
            "failed": float(sc.unserved[w, 0]),
            "rejected": float(sc.unserved[w, 1]),
            "missed": float(missed),
            "mean_replicas": float(acc[K.ACC_REPLICA_S] / cfg.episode_s),
            "ttft_p99_s": K.hist_percentile(st.ttft_hist[e], 99),
            "tbt_p99_s": K.hist_percentile(st.tbt_hist[e], 99),
            "duration_s": float(cfg.episode_s),
            "slo_penalty": pen,
        }


# The rewards leave the env as float32 (SB3's VecEnv contract; NativeVecEnv casts them): a step's reward of
# -(dollars + slo_penalty x missed) / reward_unit beyond float32's range became -inf. The margin covers the
# episode's cost term and a return summed in float32 (SB3's VecMonitor).
REWARD_MARGIN = 1e3


def check_penalty_range(cfg: AutoscaleConfig, sc: Scenario) -> None:
    """``ValueError`` naming ``slo_penalty`` when a level x the busiest window's requests / ``reward_unit`` (the
    reward of an episode that misses them all) passes float32's largest number / ``REWARD_MARGIN``: the
    rewards are float32, and slo_penalty=1e308 made the objective inf and the normalized score NaN (null).
    Every level below it keeps rewards, returns, objectives and the score finite."""
    n = max(float(sc.arrivals.sum(axis=1).max()), 1.0)
    limit = float(np.finfo(np.float32).max) / REWARD_MARGIN
    for pen in cfg.penalties():
        if not pen * n / sc.reward_unit <= limit:
            raise ValueError(f"Autoscale: slo_penalty {pen:g} (dollars per missed request) x the busiest window's "
                             f"{n:.0f} requests / the reward unit (${sc.reward_unit:.3g} a step) passes float32's "
                             f"range (the rewards' type) with a margin of {REWARD_MARGIN:g}: at most "
                             f"{limit * sc.reward_unit / n:.2e}, lower slo_penalty")


class AutoscaleEnv(VecEnvView):
    """The single-env Gymnasium view (E = 1) of :class:`AutoscaleVecEnv`."""

    vec_class = AutoscaleVecEnv


class AutoscaleVectorEnv(NativeVectorEnv):
    """The Gymnasium ``VectorEnv`` of :class:`AutoscaleVecEnv` (``gymnasium.make_vec``'s vector entry point)."""

    vec_class = AutoscaleVecEnv
