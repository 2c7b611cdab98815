"""Routing-v0 throughput: routed requests per second, native batched VecEnv vs SB3 DummyVecEnv.

    python -m envs.bench --env servegym/Routing-v0 [--sizes 1 16 256] [--repeats 3] [--json FILE]

Every routed request also simulates what the replicas do until the next arrival (each replica's
engine iterations), so requests/s measures the whole cluster model, not the router alone. The
action is round-robin (computed in numpy, negligible), the scenario the default one (8 replicas
of Llama-3.1-8B on H100, the built-in Mooncake-like conversation trace, load 0.9). One core;
medians over ``--repeats`` timed runs; each ratio compares figures measured in this run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.routing import env as rt
from envs.options import Parser


def _rate(vec, steps: int, repeats: int) -> float:
    """Median routed requests/s of ``vec`` over ``repeats`` runs of ``steps`` steps."""
    vec.reset()
    R = vec.action_space.n
    k = 0
    vec.step(np.full(vec.num_envs, 0))  # warm: compilation, first reset
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            k += 1
            vec.step(np.full(vec.num_envs, k % R))
        rates.append(steps * vec.num_envs / (time.perf_counter() - t))
    return float(np.median(rates))


def build_parser() -> Parser:
    p = Parser(prog="python -m envs.bench --env servegym/Routing-v0", description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20_000, help="native routed requests per timed run")
    p.add_argument("--json", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = []
    for E in a.sizes:
        steps = max(20, a.steps // E)
        native = _rate(rt.RoutingVecEnv(E, seed=0, load=0.9), steps, a.repeats)
        dummy = _rate(DummyVecEnv([lambda: rt.RoutingEnv(load=0.9) for _ in range(E)]),
                      max(5, steps // 10), a.repeats)
        rows.append({"n_envs": E, "native_steps_per_s": native, "dummy_steps_per_s": dummy,
                     "ratio": native / dummy})
        print(f"E={E:4d}  native {native:9,.0f} routed req/s   dummy {dummy:9,.0f} req/s   ratio "
              f"{native / dummy:5.2f}x", flush=True)
    report = {"env": rt.ENV_ID, "rows": rows, "repeats": a.repeats, "unit": "routed requests/s",
              "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                          "processor": platform.processor(), "threads": 1}}
    at = {r["n_envs"]: r for r in rows}
    if 256 in at:
        print(f"routed requests/s at E=256: {at[256]['native_steps_per_s']:,.0f}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
