"""Environment throughput: each environment's native batched VecEnv against SB3's DummyVecEnv
(for the multi-agent ``servegym/MultiCluster-v0``: its batched ``RoleVecEnv`` against PettingZoo
parallel envs stepped per agent in Python, ``envs.multi.bench``).

    python -m envs.bench [--env ID] [benchmark flags ...] [--json FILE]
    python -m envs.bench --help               # every environment and the flags its benchmark takes
    python -m envs.bench --env ID --help      # one environment's benchmark

``--env`` (default ``servegym/KVAdmission-v0``; the id, the short name or the package name)
hands the remaining arguments to that environment's benchmark module (``BENCHES``).

Every benchmark measures steady state, not the first steps after a reset (when batches are
nearly empty and a step is cheap): whole episodes, or timed steps after a warm-up long enough for
the batch to fill. Its JSON has DESIGN.md's ``{"env", "rows": [{"n_envs", "native_steps_per_s",
"dummy_steps_per_s", "ratio"}, ...]}`` plus a top-level ``"steady_state"`` object saying how the
rows were measured (``method``, ``warmup_steps``, ``steps_timed``, ``repeats``) and, per row,
what a step simulates beside steps/s (requests/s, simulated seconds per wall second, mean batch).
:func:`steady_rate` and :func:`cluster_probe` are the shared timing and accounting.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from envs import options
from envs.options import Parser

# Environment id -> module whose build_parser() and main(argv) benchmark it.
BENCHES: dict[str, str] = {"servegym/KVAdmission-v0": "envs.kv_admission.bench",
                           "servegym/PrefixEviction-v0": "envs.prefix_eviction.bench",
                           "servegym/Routing-v0": "envs.routing.bench",
                           "servegym/ExpertPlacement-v0": "envs.expert_placement.bench",
                           "servegym/Autoscale-v0": "envs.autoscale.bench",
                           "servegym/Disaggregation-v0": "envs.disaggregation.bench",
                           "servegym/MultiCluster-v0": "envs.multi.bench"}
DEFAULT = "servegym/KVAdmission-v0"
PROG = "python -m envs.bench"


# The timer of every figure: wall clock (default) or, with ``--clock cpu``, this thread's CPU time
# (``time.thread_time``: on a machine shared with other jobs, time the process was not running is
# left out; the kernels and numpy run in this thread). ``start`` sets it, ``now`` reads it.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
_CLOCK: list[Callable[[], float]] = [time.perf_counter]


def now() -> float:
    """The benchmark clock (seconds): ``CLOCKS[--clock]``, wall clock until ``start`` sets it."""
    return _CLOCK[0]()


def count_arg(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum``; argparse's one line otherwise ("invalid int value: 'x'",
    or ``argparse.ArgumentTypeError`` "0: must be >= 1")."""
    def parse(value: str) -> int:
        n = int(value)  # ValueError: argparse's "invalid int value" (the name below)
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be >= {minimum}")
        return n
    parse.__name__ = "int"
    return parse


def bench_parser(prog: str, doc: str | None, sizes: list[int], repeats: int, steps: int | None = None,
                 steps_help: str = "native env-steps per timed run", warmup: int | None = None,
                 warmup_help: str = "untimed steps per env before timing (batch fill)",
                 clock: bool = True) -> Parser:
    """The flags every environment's benchmark shares: ``--sizes`` (envs per batch, one row
    each), ``--repeats`` (timed runs per figure, median), ``--steps`` and ``--warmup`` where the
    benchmark times a number of steps (given a default), ``--clock`` (wall|cpu, ``CLOCKS``) unless
    ``clock`` is False, and ``--json FILE``; the caller adds its own flags to the returned parser."""
    p = Parser(prog=prog, description=doc)
    # checked when parsed: --sizes 0 was a ZeroDivisionError traceback, --repeats 0 and --warmup -5 a ValueError
    # traceback from steady_rate, --steps -1 was read as the 20-step floor of row_steps
    p.add_argument("--sizes", type=count_arg(1), nargs="+", default=sizes)
    p.add_argument("--repeats", type=count_arg(1), default=repeats)
    if steps is not None:
        p.add_argument("--steps", type=count_arg(1), default=steps, help=steps_help)
    if warmup is not None:
        p.add_argument("--warmup", type=count_arg(0), default=warmup, help=warmup_help)
    if clock:
        p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                       help="wall clock, or this thread's CPU time (for a machine shared with other jobs)")
    p.add_argument("--json", type=options.output_file_arg)  # checked before the run (was a traceback after it)
    return p


def start(args: Any) -> None:
    """Before timing: the clock of ``args.clock`` (if the parser has one) and this process pinned
    to one core (the kernels are single-threaded; the targets are stated per core)."""
    _CLOCK[0] = CLOCKS[getattr(args, "clock", "wall")]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def machine() -> dict[str, Any]:
    """The ``"machine"`` object of a benchmark JSON (one thread: the pinned core)."""
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor(), "threads": 1}


def write_json(path: Path | None, report: dict) -> None:
    """``report`` as indented JSON at ``path`` (nothing when ``path`` is None)."""
    if path is not None:
        Path(path).write_text(json.dumps(report, indent=2))


def parser_of(env_id: str) -> Parser:
    """The argument parser of ``env_id``'s benchmark."""
    return importlib.import_module(BENCHES[env_id]).build_parser()


def overview() -> str:
    """``python -m envs.bench --help``: what the command does and, per environment, only the flags
    its benchmark takes (read from each benchmark's own parser)."""
    parts = [__doc__.strip(), "", "environments and the flags each benchmark takes:"]
    for env_id in BENCHES:
        p = parser_of(env_id)
        p.description = None
        parts += ["", f"--env {env_id} ({options.short_name(env_id)}, {options.package_name(env_id)}):",
                  p.format_help().rstrip()]
    return "\n".join(parts) + "\n"


def split_env(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--env VALUE`` / ``--env=VALUE`` taken out of ``argv``: (the value or None, the rest)."""
    for i, arg in enumerate(argv):
        if arg == "--env":
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                Parser(prog=PROG).error("argument --env: expected one argument")
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--env="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv

# act(vec, k) -> actions [E] for the k-th step (k counts from 0 over warm-up and timed steps).
Act = Callable[[Any, int], np.ndarray]


def steady_rate(vec, act: Act, warmup: int, steps: int, repeats: int,
                probe: Callable[[Any], dict[str, np.ndarray]] | None = None) -> dict[str, float]:
    """Steady-state throughput of ``vec`` (any SB3 VecEnv).

    Resets, runs ``warmup`` untimed steps (compilation, filling the batch), then ``repeats``
    timed runs of ``steps`` steps each; returns ``steps_per_s`` (median env-steps per second of
    the benchmark clock, ``now``).
    With ``probe`` (vec -> {name: per-env cumulative quantity [E]}, e.g. the simulated clock or
    finished requests), one more run of ``steps`` steps, untimed so the probe's cost stays out
    of the timing, measures each quantity's mean increase per env-step (``NAME_per_step``) over
    envs whose episode did not end in that step (their counters restart with the next episode);
    and ``NAME_mean`` for a name starting with ``level_`` (a level such as the running batch,
    averaged over steps and envs instead of differenced). Raises ``ValueError`` for steps < 1 or
    repeats < 1."""
    if steps < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"steady_rate: steps and repeats must be >= 1 and warmup >= 0, got steps={steps}, "
                         f"repeats={repeats}, warmup={warmup}")
    vec.reset()
    k = 0
    for _ in range(warmup):
        vec.step(act(vec, k))
        k += 1
    rates = []
    for _ in range(repeats):
        t = now()
        for _ in range(steps):
            vec.step(act(vec, k))
            k += 1
        rates.append(steps * vec.num_envs / (now() - t))
    out = {"steps_per_s": float(np.median(rates)), "steps_per_s_runs": [float(r) for r in rates]}
    if probe is None:
        return out
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    before = probe(vec)
    for _ in range(steps):
        _, _, done, _ = vec.step(act(vec, k))
        k += 1
        after = probe(vec)
        live = ~np.asarray(done, bool)
        for name, value in after.items():
            if name.startswith("level_"):
                sums[name] = sums.get(name, 0.0) + float(value.sum())
                counts[name] = counts.get(name, 0) + value.size
            else:
                sums[name] = sums.get(name, 0.0) + float((value - before[name])[live].sum())
                counts[name] = counts.get(name, 0) + int(live.sum())
        before = after
    for name, s in sums.items():
        key = f"{name[6:]}_mean" if name.startswith("level_") else f"{name}_per_step"
        out[key] = s / max(counts[name], 1)
    return out


def cluster_probe(vec) -> dict[str, np.ndarray]:
    """Per-env quantities of an ``envs.core`` cluster (``vec.state``): the simulated clock
    (seconds), finished requests, arrived requests and the running batch (a level: requests
    running on all replicas of the env)."""
    from envs.core import state as S

    st = vec.state
    return {"simulated_s": st.clock.copy(), "finished": st.counters[:, S.C_FINISHED].astype(np.float64),
            "arrived": st.counters[:, S.C_ARRIVED].astype(np.float64),
            "level_batch": st.n_running.sum(1).astype(np.float64)}


def cluster_row(E: int, native: dict[str, float], dummy: dict[str, float]) -> dict[str, float]:
    """A benchmark row of an ``envs.core`` environment from :func:`steady_rate` results with
    :func:`cluster_probe`: steps/s, ratio, and what the native steps simulate per wall second."""
    n = native["steps_per_s"]
    return {"n_envs": E, "native_steps_per_s": n, "dummy_steps_per_s": dummy["steps_per_s"],
            "ratio": n / dummy["steps_per_s"],
            "mean_batch": native["batch_mean"],
            "finished_per_step": native["finished_per_step"],
            "simulated_s_per_step": native["simulated_s_per_step"],
            "finished_requests_per_s": n * native["finished_per_step"],
            "simulated_s_per_wall_s": n * native["simulated_s_per_step"],
            "native_steps_per_s_runs": native["steps_per_s_runs"],
            "dummy_steps_per_s_runs": dummy["steps_per_s_runs"]}


def row_steps(E: int, steps: int, dummy_div: int) -> tuple[int, int]:
    """Steps of each env per timed run in the row of ``E`` envs: (native, DummyVecEnv) for a
    budget of ``steps`` native env-steps; DummyVecEnv runs 1/``dummy_div`` of them (it is slower)."""
    native = max(20, steps // E)
    return native, max(5, native // dummy_div)


def steps_timed(sizes: list[int], steps: int, dummy_div: int) -> dict[str, list[int]]:
    """The ``steps_timed`` of a ``steady_state`` object: ``row_steps`` of every row."""
    return {str(E): list(row_steps(E, steps, dummy_div)) for E in sizes}


def steady_state(method: str, warmup_steps: int | None, steps_timed: int | str, repeats: int, **extra: Any) -> dict:
    """The top-level ``"steady_state"`` object of a benchmark JSON."""
    return {"method": method, "warmup_steps": warmup_steps, "steps_timed": steps_timed, "repeats": repeats,
            **extra}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = split_env(argv)
    if name is None and any(x in ("-h", "--help") for x in rest):
        print(overview(), end="")
        return 0
    env_id = DEFAULT
    if name is not None:
        try:
            env_id = options.resolve_env_id(name)
        except ValueError as err:
            Parser(prog=PROG).error(f"argument --env: {err}")
    if env_id not in BENCHES:
        Parser(prog=PROG).error(f"argument --env: {env_id} has no benchmark; environments with one: "
                                f"{', '.join(BENCHES)}")
    return importlib.import_module(BENCHES[env_id]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
