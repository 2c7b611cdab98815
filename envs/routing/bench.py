"""Routing-v0 throughput: routed requests per second, native batched VecEnv vs SB3 DummyVecEnv.

    python -m envs.bench --env servegym/Routing-v0 [--sizes 1 16 256] [--repeats 3] [--json FILE]

Every routed request also simulates what the replicas do until the next arrival (each replica's
engine iterations), so requests/s measures the whole cluster model, not the router alone. The
action is round-robin (computed in numpy, negligible), the scenario the default one (8 replicas
of Llama-3.1-8B on H100, the built-in Mooncake-like conversation trace, load 0.9). One core;
steady state: ``--warmup`` untimed requests per env first, then medians over ``--repeats`` timed
runs; each ratio compares figures measured in this run. Each row also gives the mean running
batch (all replicas of an env) and simulated seconds per wall second (one more, untimed run).
"""

from __future__ import annotations

import sys

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.bench import (
    bench_parser,
    cluster_probe,
    cluster_row,
    machine,
    row_steps,
    start,
    steady_rate,
    steady_state,
    steps_timed,
    write_json,
)
from envs.routing import env as rt
from envs.options import Parser


# Untimed routed requests per env before timing: the replicas' batches fill (the default
# window has 1024 requests; episodes then also end and restart inside the timed runs).
WARMUP = 300
# DummyVecEnv runs 1/DUMMY_DIV of the native steps per timed run. At 1/10 its runs at E = 256 were 7
# steps per env (0.2 s): on a shared machine they swung 94-135 us per routed request between runs (a
# garbage-collection pause lands in one run and not the next) and the median of 3 came out low; at 1/2
# (39 steps per env) its runs agreed within about 12%.
DUMMY_DIV = 2


def _round_robin(vec, k: int) -> np.ndarray:
    return np.full(vec.num_envs, k % vec.action_space.n)


def build_parser() -> Parser:
    return bench_parser("python -m envs.bench --env servegym/Routing-v0", __doc__, [1, 16, 256], 3, 20_000,
                        "native routed requests per timed run", WARMUP,
                        "untimed routed requests per env before timing")


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start(a)
    rows = []
    for E in a.sizes:
        steps, dummy_steps = row_steps(E, a.steps, DUMMY_DIV)
        native = steady_rate(rt.RoutingVecEnv(E, seed=0, load=0.9), _round_robin, a.warmup, steps, a.repeats,
                             cluster_probe)
        dummy = steady_rate(DummyVecEnv([lambda: rt.RoutingEnv(load=0.9) for _ in range(E)]), _round_robin,
                            a.warmup, dummy_steps, a.repeats)
        row = cluster_row(E, native, dummy)
        rows.append(row)
        print(f"E={E:4d}  native {row['native_steps_per_s']:9,.0f} routed req/s   dummy {row['dummy_steps_per_s']:9,.0f}"
              f"   ratio {row['ratio']:5.2f}x   mean batch (all replicas) {row['mean_batch']:6.1f}   "
              f"{row['simulated_s_per_wall_s']:7,.1f} simulated s/s", flush=True)
    report = {"env": rt.ENV_ID, "rows": rows, "repeats": a.repeats, "clock": a.clock, "unit": "routed requests/s",
              "steady_state": steady_state(
                  "timed routed requests after a warm-up that fills the replicas' batches", a.warmup,
                  steps_timed(a.sizes, a.steps, DUMMY_DIV), a.repeats,
                  steps_timed_is="per row: [native, dummy] steps of each env per timed run",
                  action="round-robin"),
              "machine": machine()}
    at = {r["n_envs"]: r for r in rows}
    if 256 in at:
        print(f"routed requests/s at E=256: {at[256]['native_steps_per_s']:,.0f}")
    write_json(a.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
