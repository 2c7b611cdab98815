"""Soak: many steps of one environment, resident memory at the start and the end.

    python -m envs.soak [--env ID] [--steps 10000000] [--n-envs 256] [--seed S]

Plays ``--steps`` env-steps of one native VecEnv (default KVAdmission-v0, E = 256) with random
legal actions, episodes ending and restarting as in training, and reports the process's resident
set size (RSS, bytes, from ``/proc/self/statm``) after a warm-up of 1% of the steps (compilation
and first allocations done) and at the end, with the growth in percent; memory must stay flat
(issue 16's target: growth < 5% over 10^7 steps). Exits 1 when growth exceeds ``--max-growth``
percent (default 5). Linux only (``/proc``); elsewhere it raises ``RuntimeError``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

import envs
from envs.options import env_arg, output_file_arg


def rss_bytes() -> int:
    """Resident set size of this process in bytes (``/proc/self/statm``); ``RuntimeError`` where
    there is no ``/proc``."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError as exc:
        raise RuntimeError(f"envs.soak: cannot read /proc/self/statm ({exc}); RSS needs Linux") from exc
    return pages * os.sysconf("SC_PAGE_SIZE")


def soak(env_id: str, steps: int, n_envs: int, seed: int, log=print) -> dict:
    """Play ``steps`` env-steps; returns the RSS record (see the module docstring)."""
    if steps < 100 or n_envs < 1:
        raise ValueError(f"soak: steps must be >= 100 and n_envs >= 1, got {steps}, {n_envs}")
    vec = envs.make_vec(env_id, n_envs, seed=seed)
    rng = np.random.default_rng(seed)
    vec.reset()
    batches = max(steps // n_envs, 2)
    warm = max(batches // 100, 1)
    rss0 = None
    episodes = 0
    t0 = time.perf_counter()
    for b in range(batches):
        if b == warm:
            rss0 = rss_bytes()
            log(f"{env_id}: after warm-up ({warm * n_envs:,} env-steps) RSS {rss0 / 2**20:,.1f} MiB")
        mask = vec.action_masks()
        keys = rng.random(mask.shape)
        keys[~mask] = -1.0
        _, _, dones, _ = vec.step(keys.argmax(1))
        episodes += int(dones.sum())
        if b and b % max(batches // 10, 1) == 0:
            log(f"{env_id}: {b * n_envs:,} env-steps, {episodes:,} episodes, RSS {rss_bytes() / 2**20:,.1f} MiB, "
                f"{time.perf_counter() - t0:,.0f} s")
    rss1 = rss_bytes()
    assert rss0 is not None
    return {"env": env_id, "n_envs": n_envs, "env_steps": batches * n_envs, "episodes": episodes,
            "rss_start_bytes": rss0, "rss_end_bytes": rss1, "growth_pct": 100.0 * (rss1 - rss0) / rss0,
            "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m envs.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", type=env_arg, default="servegym/KVAdmission-v0",
                   help="environment id, short or package name (single-agent; default KVAdmission-v0)")
    p.add_argument("--steps", type=int, default=10_000_000)
    p.add_argument("--n-envs", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-growth", type=float, default=5.0, help="percent RSS growth that fails the soak")
    p.add_argument("--json", type=output_file_arg)  # checked when parsed, before the run
    a = p.parse_args(argv)
    if a.env not in envs.VEC_ENVS:
        p.error(f"--env {a.env}: multi-agent; the soak plays a native VecEnv: {', '.join(envs.VEC_ENVS)}")
    if a.steps < 100:  # soak() needs a warm-up batch before its first RSS reading
        p.error(f"--steps {a.steps}: must be >= 100")
    if a.n_envs < 1:
        p.error(f"--n-envs {a.n_envs}: must be >= 1")
    if a.seed < 0:
        p.error(f"--seed {a.seed}: must be >= 0 (numpy seeds are non-negative)")
    if not (math.isfinite(a.max_growth) and a.max_growth >= 0):  # growth > nan is never true: nan passed every soak
        p.error(f"--max-growth {a.max_growth}: must be a finite percentage >= 0")
    r = soak(a.env, a.steps, a.n_envs, a.seed, log=lambda m: print(m, flush=True))
    print(f"{a.env}: {r['env_steps']:,} env-steps, {r['episodes']:,} episodes: RSS {r['rss_start_bytes'] / 2**20:,.1f}"
          f" -> {r['rss_end_bytes'] / 2**20:,.1f} MiB ({r['growth_pct']:+.2f}%)", flush=True)
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 1 if r["growth_pct"] > a.max_growth else 0


if __name__ == "__main__":
    sys.exit(main())
