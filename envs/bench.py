"""Environment throughput: the native batched VecEnv against SB3's DummyVecEnv of single envs.

    python -m envs.bench [--env servegym/KVAdmission-v0] [--sizes 1 16 256 1024] [--json FILE]
    python -m envs.bench --env ID --help      # the flags that environment's benchmark takes

Other environments' benchmarks live in their own modules (``BENCHES``); ``--env`` (any name form
of ``envs.options.resolve_env_id``) hands the remaining arguments to that module's ``main``.

Both run the same scenario with the same constant action (vLLM's: admit all, 8192 budget), on
one core (the numba kernels are single-threaded); each figure is the median over ``--repeats``
timed runs, and every ratio compares figures measured in this one run. Also: wall time to
simulate the whole Azure 2023 conversation trace on one replica under vLLM FCFS.
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

from envs import kv_admission as kva
from envs.options import Parser

ENV_ID = kva.ENV_ID
# Environment id -> module whose main(argv) benchmarks it (KVAdmission's is this module).
BENCHES: dict[str, str] = {"servegym/PrefixEviction-v0": "envs.prefix_eviction_bench",
                           "servegym/Routing-v0": "envs.routing_bench",
                           "servegym/ExpertPlacement-v0": "envs.expert_placement_bench",
                           "servegym/Autoscale-v0": "envs.autoscale_bench"}
AZURE_CONV = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure_llm_2023_conv.csv"
VLLM_ACTION = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, kva.BUDGET_LEVELS.index(8192), False, 0)


def _rate(vec, steps: int, repeats: int) -> float:
    """Median env-steps per second of ``vec`` over ``repeats`` runs of ``steps`` steps."""
    vec.reset()
    actions = np.full(vec.num_envs, VLLM_ACTION)
    vec.step(actions)  # warm (compilation, first reset)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            vec.step(actions)
        rates.append(steps * vec.num_envs / (time.perf_counter() - t))
    return float(np.median(rates))


def bench_sizes(sizes: list[int], repeats: int, budget_steps: int) -> list[dict]:
    rows = []
    for E in sizes:
        steps = max(20, budget_steps // E)
        native = _rate(kva.KVAdmissionVecEnv(E, seed=0), steps, repeats)
        dummy_steps = max(5, steps // 20)
        dummy = _rate(
            DummyVecEnv([lambda: kva.KVAdmissionEnv() for _ in range(E)]), dummy_steps, repeats
        )
        rows.append({"n_envs": E, "native_steps_per_s": native, "dummy_steps_per_s": dummy,
                     "ratio": native / dummy})
        print(f"E={E:5d}  native {native:12,.0f} steps/s   dummy {dummy:10,.0f} steps/s   "
              f"ratio {native / dummy:7.1f}x", flush=True)
    return rows


def bench_full_trace(path: Path) -> dict | None:
    """Whole trace, one replica, vLLM FCFS, replayed at its own rate."""
    if not path.exists():
        print(f"skipping the full-trace run: {path} not found", flush=True)
        return None
    import traces

    trace = traces.load_trace(path)
    vec = kva.KVAdmissionVecEnv(1, seed=0, trace=trace, split="all", window_requests=len(trace),
                                rate_scale=1.0, queue_slots=8192, drain_s=3600.0)
    t = time.perf_counter()
    vec.reset()
    steps = 0
    done = False
    info: dict = {}
    actions = np.array([VLLM_ACTION])
    while not done:
        _, _, d, infos = vec.step(actions)
        done = bool(d[0])
        info = infos[0]
        steps += 1
    wall = time.perf_counter() - t
    m = info["metrics"]
    print(f"full Azure conversation trace ({len(trace)} requests, {m['duration_s']:.0f} s simulated) "
          f"under vLLM FCFS: {wall:.2f} s wall, {steps} iterations, slo_attainment "
          f"{m['slo_attainment']:.3f}", flush=True)
    return {"trace": str(path), "requests": len(trace), "iterations": steps, "wall_s": wall,
            "simulated_s": m["duration_s"], "slo_attainment": m["slo_attainment"]}


def build_parser() -> Parser:
    p = Parser(prog=f"python -m envs.bench --env {ENV_ID}", description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256, 1024])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=200_000, help="native env-steps per timed run")
    p.add_argument("--json", type=Path)
    return p


def parser_of(env_id: str) -> Parser:
    """The argument parser of ``env_id``'s benchmark."""
    if env_id == ENV_ID:
        return build_parser()
    import importlib

    return importlib.import_module(BENCHES[env_id]).build_parser()


def overview() -> str:
    """``python -m envs.bench --help``: what the command does and, per environment, only the flags
    its benchmark takes (from each benchmark's own parser)."""
    from envs import options

    parts = [__doc__.strip(), "", "environments (--env ID, short name or package name) and the flags "
             "each benchmark takes:"]
    for env_id in [ENV_ID, *BENCHES]:
        p = parser_of(env_id)
        p.description = None
        parts += ["", f"--env {env_id} ({options.short_name(env_id)}, {options.package_name(env_id)}):",
                  p.format_help().rstrip()]
    return "\n".join(parts) + "\n"


def _split_env(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--env VALUE`` / ``--env=VALUE`` taken out of ``argv``: (the value or None, the rest)."""
    for i, arg in enumerate(argv):
        if arg == "--env":
            if i + 1 >= len(argv):
                Parser(prog="python -m envs.bench").error("argument --env: expected one argument")
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--env="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def main(argv: list[str] | None = None) -> int:
    from envs import options

    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = _split_env(argv)
    if name is None and any(x in ("-h", "--help") for x in rest):
        print(overview(), end="")
        return 0
    env_id = ENV_ID
    if name is not None:
        try:
            env_id = options.resolve_env_id(name)
        except ValueError as err:
            Parser(prog="python -m envs.bench").error(f"argument --env: {err}")
    if env_id != ENV_ID:
        if env_id not in BENCHES:
            Parser(prog="python -m envs.bench").error(
                f"argument --env: {env_id} has no benchmark; environments with one: "
                f"{', '.join([ENV_ID, *BENCHES])}")
        import importlib

        return importlib.import_module(BENCHES[env_id]).main(rest)
    a = build_parser().parse_args(rest)
    if hasattr(os, "sched_setaffinity"):  # one core, as the targets are stated
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = bench_sizes(a.sizes, a.repeats, a.steps)
    full = bench_full_trace(AZURE_CONV)
    report = {"env": ENV_ID, "rows": rows, "full_trace": full, "repeats": a.repeats,
              "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                          "processor": platform.processor(), "threads": 1}}
    targets = {r["n_envs"]: r for r in rows}
    if 256 in targets:
        print(f"target >= 20x DummyVecEnv at E=256: {targets[256]['ratio']:.1f}x")
    if 1024 in targets:
        print(f"target >= 100,000 env-steps/s at E=1024: {targets[1024]['native_steps_per_s']:,.0f}")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
