"""Autoscale-v0 throughput: simulated hours per wall second, native VecEnv vs DummyVecEnv.

    python -m envs.bench --env servegym/Autoscale-v0 [--sizes 1 16 64 256] [--repeats 5] [--json FILE]

Both run the default scenario with the same constant action (no change), on one core; each
figure is the median over ``--repeats`` timed runs of whole control intervals, and every ratio
compares figures of this one run. The normalized-score references of every window (the oracle's
dynamic programme, a one-off per window) are computed before timing. The fluid model's error
against the full cluster model needs a policy, so it is measured by ``python -m
agents.autoscale_fidelity`` (one hour of a held-out day under ``hpa``: ``--hours 1``; minutes).
"""

from __future__ import annotations

import sys

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.autoscale import env as asc
from envs.autoscale import kernels as K
from envs.bench import bench_parser, machine, now, start, steady_state, write_json
from envs.options import Parser


def _rate(vec, steps: int, repeats: int, noop: int) -> tuple[float, float]:
    """Median env-steps (control intervals) per second over ``repeats`` timed runs of ``steps``
    steps, and the requests that arrived per env-step over those runs (a native VecEnv's
    ``state``; NaN for DummyVecEnv). Runs start at the episodes' start and stay inside them."""
    vec.reset()
    if hasattr(vec, "scenario"):  # the per-window references (oracle DP) are computed once, here
        from tqdm import tqdm

        jobs = [(w, pen) for w in range(vec.scenario.arrivals.shape[0]) for pen in vec.config.penalties()]
        for w, pen in tqdm(jobs, desc=f"E={vec.num_envs}: oracle references (once per window and "
                           "penalty)", unit="window", file=sys.stderr, leave=False):
            asc.references(vec.scenario, w, pen, vec.n_steps)
    actions = np.full(vec.num_envs, noop)
    vec.step(actions)  # warm
    rates = []
    for _ in range(repeats):
        t = now()
        for _ in range(steps):
            vec.step(actions)
        rates.append(steps * vec.num_envs / (now() - t))
    per_step = float("nan")
    if hasattr(vec, "state"):
        st = vec.state
        per_step = float(st.acc[:, K.ACC_ARRIVED].sum() / st.step.sum())
    return float(np.median(rates)), per_step


def build_parser() -> Parser:
    return bench_parser("python -m envs.bench --env servegym/Autoscale-v0", __doc__, [1, 16, 64, 256], 5, 20_000)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start(a)
    probe = asc.AutoscaleVecEnv(1, seed=0)
    noop = int(probe.action_of(np.zeros((1, probe.G), np.int64))[0])
    interval = probe.config.interval_s
    rows = []
    for E in a.sizes:
        print(f"E={E:4d}: timing native and DummyVecEnv ({a.repeats} repeats each) ...",
              file=sys.stderr, flush=True)
        steps = max(20, min(a.steps // E, probe.n_steps - 2))
        native, req_per_step = _rate(asc.AutoscaleVecEnv(E, seed=0), steps, a.repeats, noop)
        dummy, _ = _rate(DummyVecEnv([lambda: asc.AutoscaleEnv() for _ in range(E)]), max(5, steps // 10),
                         a.repeats, noop)
        row = {"n_envs": E, "native_steps_per_s": native, "dummy_steps_per_s": dummy,
               "ratio": native / dummy, "sim_hours_per_s": native * interval / 3600.0,
               "simulated_s_per_wall_s": native * interval, "arrived_per_step": req_per_step,
               "requests_per_s": native * req_per_step}
        rows.append(row)
        print(f"E={E:4d}  native {native:10,.0f} steps/s = {row['sim_hours_per_s']:8,.0f} simulated h/s = "
              f"{row['requests_per_s']:12,.0f} requests/s   "
              f"dummy {dummy:9,.0f} steps/s   ratio {row['ratio']:5.1f}x", flush=True)
    report = {"env": asc.ENV_ID, "rows": rows, "repeats": a.repeats, "clock": a.clock, "interval_s": interval,
              "steady_state": steady_state(
                  "timed control intervals from the episode's start (one warm step); a step is one control "
                  "interval of the fluid model, whose cost does not depend on how full the cluster is; "
                  "sim_hours_per_s, simulated_s_per_wall_s and requests_per_s (arrivals of the trace the "
                  "timed intervals served) say what a step simulates", 1,
                  {str(E): [max(20, min(a.steps // E, probe.n_steps - 2)),
                            max(5, max(20, min(a.steps // E, probe.n_steps - 2)) // 10)] for E in a.sizes},
                  a.repeats, steps_timed_is="per row: [native, dummy] steps of each env per timed run",
                  action="no change"),
              "machine": machine()}
    write_json(a.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
