"""Disaggregation-v0 throughput: simulated seconds per wall second per env, native batched VecEnv
vs SB3 DummyVecEnv.

    python -m envs.bench --env servegym/Disaggregation-v0 [--sizes 1 8] [--episodes 2] [--json FILE]

One step is one decision interval (10 simulated seconds of the default scenario: 8 instances of
Llama-3.1-8B on H100, Azure conversation / code phases, loads 0.5 and 0.8); every step runs every
engine iteration, KV transfer and arrival of the interval. Each timed run plays whole episodes
under a fixed configuration: all colocated (``--roles colocated``) or 5 prefill + 3 decode
(``--roles 5p3d``, the default: the prefill instances hand every request over). One core (the
process is pinned); medians over ``--repeats`` runs; compilation is excluded (a warm-up episode
runs first). Rates count the simulated seconds of all envs of the batch: one core's throughput.
The issue's target: >= 1,000 simulated seconds per wall second per env on one core.
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.bench import bench_parser, start, write_json
from envs.options import Parser
from envs.disaggregation import kernels as K
from envs.disaggregation.env import DisaggregationEnv, DisaggregationVecEnv

ROLES = {"colocated": lambda R: [K.ROLE_COLOCATED] * R,
         "5p3d": lambda R: [K.ROLE_PREFILL] * (5 * R // 8) + [K.ROLE_DECODE] * (R - 5 * R // 8)}


def _run(vec, roles: list[int], episodes: int) -> tuple[float, float]:
    """Simulated seconds (all envs together) per wall second and per CPU second of this process,
    over ``episodes`` episodes of every env. One core runs the batch, so this is the throughput
    of one core; with E = 1 it is the rate one env advances. The CPU figure is what a core of
    one's own would give on a shared machine."""
    E = vec.num_envs
    a = np.tile(np.array(roles + [0], np.int64), (E, 1))
    steps = vec.get_attr("config")[0].decisions * episodes
    t = time.perf_counter()
    c = time.process_time()
    sim = 0.0
    for _ in range(steps):
        before = _clocks(vec)
        vec.step(a)
        after = _clocks(vec)
        sim += float(np.sum(np.where(after >= before, after - before, after)))
    return sim / (time.perf_counter() - t), sim / (time.process_time() - c)


def _clocks(vec) -> np.ndarray:
    if isinstance(vec, DisaggregationVecEnv):
        return vec.state.clock.copy()
    return np.array([e.unwrapped._vec.state.clock[0] for e in vec.envs])


def build_parser() -> Parser:
    # No --clock: every row gives both the wall-clock and the CPU-time figure.
    p = bench_parser("python -m envs.bench --env servegym/Disaggregation-v0", __doc__, [1, 8], 3, clock=False)
    p.add_argument("--episodes", type=int, default=1, help="episodes per env per timed run")
    p.add_argument("--roles", choices=sorted(ROLES), default="5p3d")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start(a)
    rows = []
    for E in a.sizes:
        native = DisaggregationVecEnv(E, seed=0)
        P, loads = native.config.episodes_per_load, native.config.loads()
        episodes = [{"window": e % P, "load": loads[(e // P) % len(loads)]} for e in range(E)]
        native.set_options(episodes)  # both sides play the same episodes
        roles = ROLES[a.roles](native.R)
        native.reset()
        _run(native, roles, 1)  # warm-up: compilation
        nat, nat_cpu = np.median([_run(native, roles, a.episodes) for _ in range(a.repeats)], axis=0)
        dummy = DummyVecEnv([lambda: DisaggregationEnv() for _ in range(E)])
        dummy.set_options(episodes)
        dummy.reset()
        dum, dum_cpu = np.median([_run(dummy, roles, a.episodes) for _ in range(max(1, a.repeats // 2))], axis=0)
        interval = native.config.interval_s
        rows.append({"n_envs": E, "native_steps_per_s": float(nat / interval), "dummy_steps_per_s": float(dum / interval),
                     "ratio": nat / dum, "native_sim_s_per_s": nat, "dummy_sim_s_per_s": dum,
                     "native_sim_s_per_cpu_s": nat_cpu, "dummy_sim_s_per_cpu_s": dum_cpu})
        print(f"E={E:4d}  native {nat:8.0f} sim-s/s ({nat / interval:7.1f} steps/s; {nat_cpu:.0f} sim-s per CPU-s)   "
              f"dummy {dum:8.0f} sim-s/s ({dum_cpu:.0f} per CPU-s)   ratio {nat / dum:.2f}", flush=True)
    out = {"env": "servegym/Disaggregation-v0", "rows": rows, "roles": a.roles,
           "target_sim_s_per_s_one_core": 1000.0, "cpu": platform.processor() or platform.machine(),
           "python": sys.version.split()[0]}
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
