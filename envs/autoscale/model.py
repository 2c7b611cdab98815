"""What Autoscale-v0 knows about one replica: response curves measured once on the full model.

The autoscaling env simulates days of traffic through a fluid model of replica pools
(``envs.autoscale.kernels``); everything that model knows about a replica of one GPU type comes
from here. One replica of the full cluster model (``envs.core``: continuous batching, paged KV,
stall-free chunked prefill, preemption, per-request TTFT and p99 TBT) serves a stream of the
trace's own requests arriving as a Poisson process at utilisation ``rho`` of its measured
capacity, for every ``rho`` of ``RHO_GRID``. From the per-request outcomes:

* ``attain[rho, d]``: share of requests that meet the SLO (the check ``slo_metric`` names: TTFT and
  TPOT by default, ``envs/slo.py``) if each also waited ``d`` more seconds
  before service (``d`` on ``delay_grid``, up to the TTFT SLO): the fluid queue's wait enters here;
* ``ttft_q[rho, k]``, ``tbt_q[rho, k]``: ``N_QUANTILES`` quantiles of TTFT and of each request's
  p99 gap between tokens;
* ``kv_use``, ``queued``, ``running`` (time averages), ``e2e_mean``, and ``drain_s``: seconds from
  the last arrival until the replica is empty (how long a removed replica keeps billing).

Each replica runs vLLM's FCFS scheduler with the largest chunked-prefill budget whose iteration
stays within the SLO's per-token limit (Sarathi-Serve's profiling rule, Agrawal et al. OSDI'24
Sec. 4.3): a larger budget lets one prefill chunk stall every decode past the limit. Curves are cached on disk,
keyed by every input and the kernels' source digest, so the same inputs give the same bits.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

import hwmodels
import traces
from envs.core import state as S
from envs.core.capacity import measure_capacity_rps
from envs.core.engine import Engine, EngineSpec, step_time
from envs.core.replica import (
    ORDER_FCFS,
    enqueue,
    reset_env_state,
    reset_replica,
    run_iteration,
)
from envs.core.workload import TraceUnsuited, build_workload

RHO_GRID = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95,
                     0.975, 1.0])
N_DELAYS = 17  # delay grid points from 0 to the TTFT SLO
N_QUANTILES = 20  # TTFT/TBT quantile levels (k + 0.5) / N_QUANTILES
BUDGET_CHOICES = (256, 512, 1024, 2048, 4096, 8192)
CAL_REQUESTS = 3000  # requests per calibration run
CAL_VERSION = 2  # 2: the SLO check follows slo_metric (TPOT by default)


@dataclass(frozen=True)
class ReplicaCurves:
    """Measured behaviour of one replica of one GPU type (arrays over ``RHO_GRID``)."""

    gpu: str
    budget: int  # prefill token budget per iteration
    capacity_rps: float  # saturated completions per second (envs.core.capacity)
    cold_start_s: float  # hwmodels.cold_start_time: weights from storage + engine start
    price_per_hour: float  # hwmodels.price_per_gpu_hour x GPUs per replica
    delay_grid: np.ndarray  # [D] seconds
    attain: np.ndarray  # [RHO, D]
    ttft_q: np.ndarray  # [RHO, Q] seconds
    tbt_q: np.ndarray  # [RHO, Q] seconds
    kv_use: np.ndarray  # [RHO] mean share of KV blocks in use
    queued: np.ndarray  # [RHO] mean queued requests
    running: np.ndarray  # [RHO] mean running requests
    e2e_mean: np.ndarray  # [RHO] seconds
    drain_s: np.ndarray  # [RHO] seconds from the last arrival to an empty replica

    def safe_util(self, target: float = 0.99) -> float:
        """Highest utilisation of the grid whose SLO attainment (no queue wait) is >= target."""
        ok = np.flatnonzero(self.attain[:, 0] >= target)
        if ok.size == 0:
            raise ValueError(f"{self.gpu}: no utilisation on the grid reaches SLO attainment {target}")
        return float(RHO_GRID[ok.max()])


def stall_free_budget(eng: Engine) -> int:
    """Largest budget of ``BUDGET_CHOICES`` whose chunk plus 64 decodes at 2k context meets the
    TBT SLO (Sarathi-Serve's rule; the smallest choice when none does)."""
    best = BUDGET_CHOICES[0]
    for b in BUDGET_CHOICES:
        if step_time(eng.coeffs, float(b), b * (b + 1) / 2.0, 64.0, 64.0 * 2048) <= eng.slo_tpot:
            best = b
    return best


@nb.njit(cache=True)
def serve_stream(st, wl, eng, budget, t_lo, t_hi, areas):
    """Env 0 / replica 0 serves window 0 of ``wl`` to the end (vLLM FCFS, admit all).

    ``areas`` gets time integrals over [t_lo, t_hi] of queued, running and used KV blocks.
    Returns the time at which the last request finished.
    """
    reset_env_state(st, 0, 0, 1.0)
    reset_replica(st, eng, 0, 0)
    arr = wl.arrival_s[0]
    N = wl.n_requests[0]
    i = 0
    now = 0.0
    while i < N or st.n_running[0, 0] + st.n_queued[0, 0] > 0:
        while i < N and arr[i] <= now:
            enqueue(st, wl, eng, 0, 0, i)
            i += 1
        q = st.n_queued[0, 0]
        used = eng.capacity_blocks - st.free_blocks[0, 0]
        dt = run_iteration(st, wl, eng, 0, 0, eng.max_seqs, budget, False, ORDER_FCFS, now)
        if dt == 0.0:
            if i >= N:
                raise RuntimeError("replica cannot schedule a request: it exceeds KV capacity")
            now = max(now, arr[i])
            continue
        lo = max(now, t_lo)
        hi = min(now + dt, t_hi)
        if hi > lo:
            w = hi - lo
            areas[0] += q * w
            areas[1] += st.n_running[0, 0] * w
            areas[2] += used * w
        now += dt
    return now


def _stream_workload(prompt: np.ndarray, output: np.ndarray, arrival: np.ndarray) -> S.Workload:
    n = len(prompt)
    return S.Workload(
        arrival_s=arrival[None, :].astype(np.float64), prompt=prompt[None, :].astype(np.int32),
        output=output[None, :].astype(np.int32), pred_bucket=np.zeros((1, n), np.int8),
        n_requests=np.array([n], np.int32), chain_ids=np.full((1, n, 1), -1, np.int64),
        chain_len=np.zeros((1, n), np.int16), failed=np.zeros((1, n), np.bool_),
    )


def _measure(eng: Engine, prompt: np.ndarray, output: np.ndarray, budget: int, capacity: float,
             seed: int) -> dict[str, np.ndarray]:
    n = len(prompt)
    gaps = np.random.default_rng(seed).exponential(1.0, n)  # common random numbers across rho
    gaps[0] = 0.0
    unit = np.cumsum(gaps)
    delays = np.linspace(0.0, eng.slo_ttft, N_DELAYS)
    levels = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
    out = {k: [] for k in ("attain", "ttft_q", "tbt_q", "kv_use", "queued", "running", "e2e_mean",
                           "drain_s")}
    skip = n // 10  # ramp-up from an empty replica
    for rho in RHO_GRID:
        arrival = unit / (rho * capacity)
        wl = _stream_workload(prompt, output, arrival)
        st = S.allocate(1, 1, n, n, 1)
        areas = np.zeros(3)
        t_lo, t_hi = float(arrival[skip]), float(arrival[-1])
        end = serve_stream(st, wl, eng, budget, t_lo, t_hi, areas)
        ttft = st.ttft[0, skip:]
        if eng.slo_metric == S.SLO_P99_TBT:
            decode_ok = st.tbt_p99[0, skip:] <= eng.slo_tpot
        else:  # TPOT; a one-token output has none and is checked on TTFT alone
            tpot = st.tpot[0, skip:]
            decode_ok = np.isnan(tpot) | (tpot <= eng.slo_tpot)
        out["attain"].append([np.mean(decode_ok & (ttft + d <= eng.slo_ttft)) for d in delays])
        out["ttft_q"].append(np.quantile(ttft, levels))
        out["tbt_q"].append(np.quantile(st.tbt_p99[0, skip:], levels))
        span = t_hi - t_lo
        out["queued"].append(areas[0] / span)
        out["running"].append(areas[1] / span)
        out["kv_use"].append(areas[2] / span / eng.capacity_blocks)
        out["e2e_mean"].append(float(np.mean(st.e2e[0, skip:])))
        out["drain_s"].append(end - float(arrival[-1]))
    res = {k: np.asarray(v, np.float64) for k, v in out.items()}
    res["delay_grid"] = delays
    return res


def cache_root() -> Path:
    """$SERVEGYM_CACHE/autoscale (default ~/.cache/servegym/autoscale)."""
    base = os.environ.get("SERVEGYM_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "servegym") / "autoscale"


def cache_save(path: Path, data: np.ndarray | dict[str, np.ndarray]) -> None:
    """Write a cache file under ``cache_root()`` atomically: ``data`` (one array to a ``.npy``
    path, named arrays to a ``.npz`` path) goes to a temporary file of this process, then
    ``os.replace`` puts it at ``path``, so that a reader (another process of a parallel sweep
    or leaderboard) sees the whole file or none. An ``OSError`` (read-only or full disk) is
    ignored: the cache only saves time. Raises ``ValueError`` for a suffix other than .npy / .npz."""
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"cache_save: {path}: expected a .npy or .npz path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
        if path.suffix == ".npy":
            np.save(tmp, data)
        else:
            np.savez(tmp, **data)
        os.replace(tmp, path)
    except OSError:
        pass


@functools.cache
def _model_digest() -> str:
    """Digest of the sources the curves depend on (the full model and the step-time model)."""
    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "envs" / "core").glob("*.py")) + [Path(__file__)]
    files += sorted((root / "hwmodels").glob("*.py")) + sorted((root / "hwmodels" / "data").glob("*.toml"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_file(key: dict) -> Path:
    key = {**key, "sources": _model_digest()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / f"curves-{digest}.npz"


def replica_curves(model: str, gpu: str, tp: int, lengths: tuple[np.ndarray, np.ndarray],
                   storage_bw: float | None = None, engine_init_s: float | None = None,
                   slo_ttft_s: float | None = None, slo_tpot_s: float | None = None,
                   seed: int = 0, slo_metric: str = "tpot") -> ReplicaCurves:
    """Measured curves of one replica (``tp`` GPUs of type ``gpu``) on requests of ``lengths``
    (prompt, output arrays of at least ``CAL_REQUESTS`` requests of the training data)."""
    eng = EngineSpec(model=model, gpu=gpu, tp=tp, slo_ttft_s=slo_ttft_s, slo_tpot_s=slo_tpot_s,
                     slo_metric=slo_metric).build()
    # Requests this replica would reject at arrival (over the context length or its KV pool,
    # envs.core.replica.rejected_at_arrival) do not load it: calibrate on the others.
    p_all, o_all = (np.asarray(a, np.int64) for a in lengths)
    need = p_all + np.maximum(o_all, 1)
    ok = (need <= eng.max_model_len) & (need <= eng.capacity_blocks * eng.block_size)
    prompt, output = (np.ascontiguousarray(a[ok][:CAL_REQUESTS], np.int64) for a in (p_all, o_all))
    if len(prompt) < CAL_REQUESTS:
        rejected = int((~ok).sum())
        raise TraceUnsuited(f"Autoscale: calibration needs {CAL_REQUESTS} requests of the training "
                            f"data that a {model} replica on {tp}x {gpu} serves, the trace has {len(prompt)} "
                            f"({rejected} rejected: longer than the context or the KV pool)",
                            f"at least {CAL_REQUESTS:,} requests in its train part that a {model} replica on "
                            f"{tp}x {gpu} serves (to calibrate the replica)",
                            f"has {len(prompt):,} there ({rejected:,} rejected: longer than the context or the KV pool)")
    eng = eng._replace(max_output=int(output.max()))
    budget = stall_free_budget(eng)
    g = hwmodels.get_gpu(gpu)
    cold = hwmodels.cold_start_time(model, g, tp, storage_bw, engine_init_s)
    price = hwmodels.price_per_gpu_hour(g) * tp
    key = {"v": CAL_VERSION, "model": model, "gpu": g.name, "tp": tp, "budget": budget,
           "slo": [eng.slo_ttft, eng.slo_tpot, slo_metric], "seed": seed, "rho": RHO_GRID.tolist(),
           "lengths": hashlib.sha256(prompt.tobytes() + output.tobytes()).hexdigest(),
           "coeffs": hashlib.sha256(eng.coeffs.tobytes()).hexdigest(), "kv": eng.capacity_blocks}
    path = _cache_file(key)
    data: dict[str, np.ndarray] | None = None
    if path.exists():
        try:
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError):
            data = None
    if data is None:
        wl, _ = build_workload(_as_trace(prompt, output), len(prompt), 1.0, seed)
        capacity = measure_capacity_rps(eng, wl, CAL_REQUESTS, budget, source="Autoscale: calibration requests")
        data = _measure(eng, prompt, output, budget, capacity, seed)
        data["capacity_rps"] = np.array(capacity)
        cache_save(path, data)
    return ReplicaCurves(
        gpu=g.name, budget=budget, capacity_rps=float(data["capacity_rps"]), cold_start_s=cold,
        price_per_hour=price, delay_grid=data["delay_grid"], attain=data["attain"],
        ttft_q=data["ttft_q"], tbt_q=data["tbt_q"], kv_use=data["kv_use"], queued=data["queued"],
        running=data["running"], e2e_mean=data["e2e_mean"], drain_s=data["drain_s"],
    )


def _as_trace(prompt: np.ndarray, output: np.ndarray) -> traces.Trace:
    n = len(prompt)
    return traces.Trace(np.arange(n, dtype=np.float64), prompt, output,
                        traces.TraceMeta("calibration", "Autoscale calibration stream", "n/a"))
