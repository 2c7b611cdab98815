"""Disaggregation-v0 throughput: simulated seconds per wall second per env, native batched VecEnv
vs SB3 DummyVecEnv.

    python -m envs.bench --env servegym/Disaggregation-v0 [--sizes 1 8] [--episodes 16] [--json FILE]

One step is one decision interval (10 simulated seconds of the default scenario: 8 instances of
Llama-3.1-8B on H100, Azure conversation / code phases, loads 0.5 and 0.8); every step runs every
engine iteration, KV transfer and arrival of the interval. Each timed run plays the same
``--episodes`` whole episodes (default 16: each of the 8 episode windows at both loads), shared
among the envs of the batch, on both sides and at every size, so that the rows compare the same
simulated work (a load-0.8 episode costs about 1.5 times a load-0.5 one: runs that drew their
episodes at random compared different work). Under a fixed configuration: all colocated
(``--roles colocated``) or 5 prefill + 3 decode (``--roles 5p3d``, the default: the prefill
instances hand every request over). One core (the process is pinned); medians over ``--repeats``
runs; compilation is excluded (a warm-up episode runs first). Rates count the simulated seconds
of all envs of the batch, each episode to its end clock: one core's throughput.
The issue's target: >= 1,000 simulated seconds per wall second per env on one core. Measured on
this project's 2-core AMD EPYC VM after issue 17's third pass: 2,011 (E = 1) and 2,122 (E = 8)
simulated seconds per CPU-second (envs/disaggregation/README.md, Speed).
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.bench import bench_parser, start, steady_state, write_json
from envs.options import Parser
from envs.disaggregation import kernels as K
from envs.disaggregation.env import DisaggregationEnv, DisaggregationVecEnv

ROLES = {"colocated": lambda R: [K.ROLE_COLOCATED] * R,
         "5p3d": lambda R: [K.ROLE_PREFILL] * (5 * R // 8) + [K.ROLE_DECODE] * (R - 5 * R // 8)}


def _make(E: int, native: bool):
    """A batch of ``E`` envs that replays the same episodes at every :func:`_restart`: envs number
    their episodes as one batch (``window_order="sequential"``: env e plays episodes e, e + E, ...,
    episode k is window k % episodes_per_load at load k // episodes_per_load; DummyVecEnv's
    single envs through ``batch_slice``)."""
    if native:
        return DisaggregationVecEnv(E, window_order="sequential")
    dummy = DummyVecEnv([lambda: DisaggregationEnv(window_order="sequential") for _ in range(E)])
    for e, env in enumerate(dummy.envs):
        env.unwrapped.vec.batch_slice(e, E)
    return dummy


def _restart(vec) -> None:
    """Back to episode 0 of the sequence (seeding restarts the episode counters)."""
    vec.seed(0)
    vec.reset()


def _run(vec, roles: list[int], episodes: int) -> tuple[float, float, float]:
    """Simulated seconds (all envs together) per wall second and per CPU second of this process,
    and finished requests per wall second, over the batch's first ``episodes`` episodes
    (``episodes / E`` whole episodes per env, every env in step; the same episodes at every size
    and on both sides). An episode's simulated time runs to its end clock, the last step's drain
    included; its finished requests are its metrics' ``finished``. One core runs the batch, so
    this is the throughput of one core; with E = 1 it is the rate one env advances. The CPU
    figure is what a core of one's own would give on a shared machine."""
    E = vec.num_envs
    a = np.tile(np.array(roles + [0], np.int64), (E, 1))
    steps = vec.get_attr("config")[0].decisions * (episodes // E)
    _restart(vec)
    t = time.perf_counter()
    c = time.process_time()
    sim = 0.0
    finished = 0.0
    for _ in range(steps):
        before = _clocks(vec)
        _, _, dones, infos = vec.step(a)
        after = _clocks(vec)
        for e in np.flatnonzero(dones):  # reset in the same step: the ended episode's clock from its metrics
            m = infos[e]["metrics"]
            after[e] = m["gpu_hours"] * 3600.0 / m["gpus"]
            finished += m["finished"]
        sim += float(np.sum(after - before))
    wall = time.perf_counter() - t
    return sim / wall, sim / (time.process_time() - c), finished / wall


def _clocks(vec) -> np.ndarray:
    # _state, not state: the clocks are exact without writing the lazy decoders back (which the
    # public ``state`` does, at a cost a training loop does not pay)
    if isinstance(vec, DisaggregationVecEnv):
        return vec._state.clock.copy()
    return np.array([e.unwrapped.vec._state.clock[0] for e in vec.envs])


def build_parser() -> Parser:
    # No --clock: every row gives both the wall-clock and the CPU-time figure.
    p = bench_parser("python -m envs.bench --env servegym/Disaggregation-v0", __doc__, [1, 8], 3, clock=False)
    p.add_argument("--episodes", type=int, default=16,
                   help="episodes per timed run, all envs together (a multiple of every size); the default "
                        "plays each of the 8 windows at both loads once")
    p.add_argument("--roles", choices=sorted(ROLES), default="5p3d")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    bad = [E for E in a.sizes if E < 1 or a.episodes % E]
    if a.episodes < 1 or bad:
        raise SystemExit(f"--episodes {a.episodes} must be >= 1 and a multiple of every --sizes value (not {bad})")
    start(a)
    rows = []
    for E in a.sizes:
        native = _make(E, True)
        roles = ROLES[a.roles](native.R)
        _run(native, roles, E)  # warm-up: compilation
        nat, nat_cpu, nat_fin = np.median([_run(native, roles, a.episodes) for _ in range(a.repeats)], axis=0)
        dummy = _make(E, False)
        dum, dum_cpu, _ = np.median([_run(dummy, roles, a.episodes) for _ in range(max(1, a.repeats // 2))], axis=0)
        interval = native.config.interval_s
        rows.append({"n_envs": E, "native_steps_per_s": float(nat / interval), "dummy_steps_per_s": float(dum / interval),
                     "ratio": nat / dum, "native_sim_s_per_s": nat, "dummy_sim_s_per_s": dum,
                     "native_sim_s_per_cpu_s": nat_cpu, "dummy_sim_s_per_cpu_s": dum_cpu,
                     # the names of envs.bench.cluster_row, as the other cluster benchmarks report them
                     "simulated_s_per_wall_s": float(nat), "finished_requests_per_s": float(nat_fin)})
        print(f"E={E:4d}  native {nat:8.0f} sim-s/s ({nat / interval:7.1f} steps/s; {nat_cpu:.0f} sim-s per CPU-s)   "
              f"dummy {dum:8.0f} sim-s/s ({dum_cpu:.0f} per CPU-s)   ratio {nat / dum:.2f}   "
              f"native {nat_fin:,.0f} finished req/s", flush=True)
    out = {"env": "servegym/Disaggregation-v0", "rows": rows, "roles": a.roles, "episodes_per_run": a.episodes,
           "steady_state": steady_state(
               "whole episodes (each timed run replays the same --episodes episodes, shared among the envs, to "
               "their end clocks); a step is one decision interval; native_steps_per_s counts interval_s of "
               "simulated time as one step", "one episode per env (compilation)",
               "whole episodes", a.repeats, episodes_per_run=a.episodes,
               dummy_repeats=max(1, a.repeats // 2), action=f"fixed roles {a.roles}, dispatch rule 0"),
           "target_sim_s_per_s_one_core": 1000.0, "cpu": platform.processor() or platform.machine(),
           "python": sys.version.split()[0]}
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
