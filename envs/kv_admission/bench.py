"""KVAdmission-v0 throughput: the native batched VecEnv against SB3's DummyVecEnv of single envs.

    python -m envs.bench [--env servegym/KVAdmission-v0] [--sizes 1 16 256 1024] [--json FILE]

Both run the same scenario with the same constant action (vLLM's: admit all, 8192 budget), on
one core (the numba kernels are single-threaded), in steady state: ``--warmup`` untimed steps
per env first (the running batch fills), then each figure is the median over ``--repeats`` timed
runs, and every ratio compares figures measured in this one run. Beside steps/s each row says
what a step simulates: the mean running batch, finished requests per second and simulated
seconds per wall second (measured in one more, untimed run of the native VecEnv). Also: wall time to
simulate the whole Azure 2023 conversation trace on one replica under vLLM FCFS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.bench import (
    bench_parser,
    cluster_probe,
    cluster_row,
    machine,
    now,
    row_steps,
    start,
    steady_rate,
    steady_state,
    steps_timed,
    write_json,
)
from envs.kv_admission import env as kva
from envs.options import Parser

ENV_ID = kva.ENV_ID
AZURE_CONV = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "azure_llm_2023_conv.csv"
# Untimed steps before timing: from an empty replica the running batch of the default scenario
# fills within ~500 iterations (mean ~70 requests after, against ~8 in the first 48 steps).
WARMUP = 2000
DUMMY_DIV = 20  # DummyVecEnv times 1/20 of the native steps
VLLM_ACTION = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, kva.BUDGET_LEVELS.index(8192), False, 0)


def _vllm(vec, k: int) -> np.ndarray:
    return np.full(vec.num_envs, VLLM_ACTION)


def bench_sizes(sizes: list[int], repeats: int, budget_steps: int, warmup: int) -> list[dict]:
    """One row per E: steady-state env-steps/s of the native VecEnv and of DummyVecEnv, both
    after ``warmup`` steps, and what a native step simulates (``envs.bench.cluster_row``)."""
    rows = []
    for E in sizes:
        steps, dummy_steps = row_steps(E, budget_steps, DUMMY_DIV)
        native = steady_rate(kva.KVAdmissionVecEnv(E, seed=0), _vllm, warmup, steps, repeats, cluster_probe)
        dummy = steady_rate(DummyVecEnv([lambda: kva.KVAdmissionEnv() for _ in range(E)]), _vllm, warmup,
                            dummy_steps, repeats)
        row = cluster_row(E, native, dummy)
        rows.append(row)
        print(f"E={E:5d}  native {row['native_steps_per_s']:10,.0f} steps/s   dummy {row['dummy_steps_per_s']:9,.0f}"
              f"   ratio {row['ratio']:5.1f}x   mean batch {row['mean_batch']:5.1f}   "
              f"{row['finished_requests_per_s']:9,.0f} finished req/s   "
              f"{row['simulated_s_per_wall_s']:8,.0f} simulated s/s", flush=True)
    return rows


def bench_full_trace(path: Path) -> dict | None:
    """Whole trace, one replica, vLLM FCFS, replayed at its own rate."""
    if not path.exists():
        print(f"skipping the full-trace run: {path} not found", flush=True)
        return None
    import traces

    trace = traces.load_trace(path)
    # Compile first (steady state, not numba's first call): the same kernels on a short window.
    warm = kva.KVAdmissionVecEnv(1, seed=0, trace=trace, split="all", window_requests=64, rate_scale=1.0,
                                 queue_slots=8192, drain_s=3600.0)
    warm.reset()
    warm.run_fixed(VLLM_ACTION, 1 << 30)
    vec = kva.KVAdmissionVecEnv(1, seed=0, trace=trace, split="all", window_requests=len(trace),
                                rate_scale=1.0, queue_slots=8192, drain_s=3600.0)
    t = now()
    vec.reset()
    steps = 0
    done = False
    info: dict = {}
    while not done:  # a fixed action: the steps run in the kernel (run_fixed), as step() would run them
        n, (_, _, d, infos) = vec.run_fixed(VLLM_ACTION, 1 << 30)
        done = bool(d[0])
        info = infos[0]
        steps += n
    wall = now() - t
    m = info["metrics"]
    print(f"full Azure conversation trace ({len(trace)} requests, {m['duration_s']:.0f} s simulated) "
          f"under vLLM FCFS: {wall:.2f} s wall, {steps} iterations, slo_attainment "
          f"{m['slo_attainment']:.3f}", flush=True)
    return {"trace": str(path), "requests": len(trace), "iterations": steps, "wall_s": wall,
            "simulated_s": m["duration_s"], "slo_attainment": m["slo_attainment"]}


def build_parser() -> Parser:
    p = bench_parser("python -m envs.bench --env " + ENV_ID, __doc__, [1, 16, 256, 1024], 5, 200_000,
                     "native env-steps per timed run (DummyVecEnv: 1/20)", WARMUP)
    p.add_argument("--no-full-trace", action="store_true", help="skip the whole-Azure-trace run")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start(a)  # the clock, and one core, as the targets are stated
    rows = bench_sizes(a.sizes, a.repeats, a.steps, a.warmup)
    full = None if a.no_full_trace else bench_full_trace(AZURE_CONV)
    report = {"env": ENV_ID, "rows": rows, "full_trace": full, "repeats": a.repeats, "clock": a.clock,
              "steady_state": steady_state(
                  "timed steps after a warm-up that fills the batch", a.warmup,
                  steps_timed(a.sizes, a.steps, DUMMY_DIV), a.repeats,
                  steps_timed_is="per row: [native, dummy] steps of each env per timed run",
                  action="vLLM FCFS (admit all, 8192 budget)"),
              "machine": machine()}
    targets = {r["n_envs"]: r for r in rows}
    if 256 in targets:
        print(f"target (issue 16) >= 200,000 env-steps/s and >= 8x DummyVecEnv at E=256: "
              f"{targets[256]['native_steps_per_s']:,.0f} steps/s, {targets[256]['ratio']:.1f}x")
    write_json(a.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
