"""Decision latency of exported policies: onnxruntime from Python against the torch policy.

    python -m agents.bench_policy [--env ID ...] [--calls 5000] [--batch 1 64] [--core 0] [--json FILE]

For each environment's zoo agent (or ``--env``; the multi-agent cluster's zoo entry is a team, not one
checkpoint, and is refused: its router is Routing-v0's observation): export it to ONNX, draw observations and masks
from the environment, then time ``--calls`` calls per batch size, pinned to one core
(``os.sched_setaffinity``; torch and onnxruntime on one thread), of

* ``onnx``: ``OnnxPolicy.act`` (what an engine runs),
* ``onnx_guarded``: the same behind ``GuardedPolicy`` (inline deadline, 500 us), and
  ``onnx_guarded_hard`` (hard deadline: inference on a worker thread),
* ``torch``: ``SB3Policy.act`` (``model.predict``, what ``agents.evaluate`` runs for a .zip),
* ``torch_module``: the exported graph's torch module called directly under ``no_grad``
  (torch without SB3's per-call overhead).

Prints p50/p99 per call in microseconds (and per decision = per call / batch), the share of
decisions a guard left to its fallback (a guarded row's times include those), and the target
check: ONNX p99 <= 100 us at batch 1.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET_P99_US = 100.0


def time_calls(fn: Callable[[np.ndarray, np.ndarray], Any], obs: np.ndarray, mask: np.ndarray,
               batch: int, calls: int, warmup: int = 200) -> np.ndarray:
    """Wall time (us) of ``calls`` calls on consecutive batches of the sample."""
    n = obs.shape[0] - batch + 1
    out = np.empty(calls)
    for i in range(-warmup, calls):
        j = (i * batch) % n
        o, m = obs[j:j + batch], mask[j:j + batch]
        t = time.perf_counter_ns()
        fn(o, m)
        if i >= 0:
            out[i] = (time.perf_counter_ns() - t) * 1e-3
    return out


def bench_env(env_id: str, batches: list[int], calls: int, seed: int = 0) -> list[dict[str, Any]]:
    import torch

    from agents.export import (
        collect_observations,
        export,
        graph_module,
        load_vecnormalize,
        resolve_source,
    )
    from agents.guarded import GuardedPolicy
    from agents.onnx_policy import OnnxPolicy
    from agents.policy import RandomPolicy
    from agents.sb3_policy import SB3Policy

    src = resolve_source(env_id, "zoo")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.onnx"
        export(env_id, "zoo", path, parity_obs=0, seed=seed)  # parity: python -m agents.export
        onnx = OnnxPolicy(path)
    torch_policy = SB3Policy(src.checkpoint)
    vn = src.checkpoint.parent / "vecnormalize.pkl"
    vecnorm = load_vecnormalize(vn) if vn.is_file() else None
    module = graph_module(torch_policy.model, vecnorm)
    obs, mask = collect_observations(env_id, max(4096, 2 * max(batches)), torch_policy.model, seed,
                                     vecnorm=vecnorm, **src.env_kwargs)
    fallback = RandomPolicy(torch_policy.model, seed)

    def torch_module(o: np.ndarray, m: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(o), torch.from_numpy(m))[0].numpy()

    rows = []
    for batch in batches:
        # Fresh guards per batch size, so each row's counters say how often the fallback decided.
        guards = {"onnx_guarded": GuardedPolicy(onnx, fallback),
                  "onnx_guarded_hard": GuardedPolicy(onnx, fallback, hard_deadline=True)}
        kinds = {"onnx": onnx.act, **{k: g.act for k, g in guards.items()}, "torch": torch_policy.act,
                 "torch_module": torch_module}
        for kind, fn in kinds.items():
            us = time_calls(fn, obs, mask, batch, calls)
            p50, p99 = np.percentile(us, [50, 99])
            row = {"env": env_id, "policy": kind, "batch": batch, "calls": calls,
                   "p50_us": float(p50), "p99_us": float(p99), "mean_us": float(us.mean()),
                   "p50_us_per_decision": float(p50 / batch), "p99_us_per_decision": float(p99 / batch)}
            if kind in guards:
                c = guards[kind].counters
                row["counters"] = c.as_dict()
                row["fallback_share"] = c.fallbacks / c.decisions
                guards[kind].close()
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    from agents import cli
    from envs.options import output_file_arg

    p = cli.make_parser("python -m agents.bench_policy", __doc__, env_kwargs=False, trace_option=None)
    p.add_argument("--env", action="append", type=cli.env_arg,
                   help="environment id, short name or package name (repeatable; default: every zoo agent but the multi-agent "
                        "cluster's team)")
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last allowed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=output_file_arg)  # checked when parsed, before the run
    a = p.parse_args(argv)
    if a.calls < 1 or min(a.batch) < 1:
        p.error("--calls and --batch must be >= 1")
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1] if a.core is None else a.core
    if core not in allowed:
        p.error(f"--core {core}: not among the allowed CPUs {allowed}")
    os.sched_setaffinity(0, {core})
    import torch

    torch.set_num_threads(1)
    from agents.policy import ZOO, _load_registries
    from agents.zoo import zoo_role

    _load_registries()
    # A zoo entry that is a team (the multi-agent cluster's: its learned seat is a router, which reads
    # Routing-v0's observation) has no one checkpoint of its environment to export; the default run ended in a
    # ValueError traceback there, after benchmarking the environments before it.
    single = [e for e in ZOO if zoo_role(e) is None]
    env_ids = a.env or single
    missing = [e for e in env_ids if e not in ZOO]
    if missing:
        p.error(f"--env {', '.join(missing)}: no zoo agent to benchmark; environments with one: "
                f"{', '.join(single)}")
    teams = [e for e in env_ids if e not in single]
    if teams:
        p.error(f"--env {', '.join(teams)}: the zoo entry is a team whose learned seat is the router "
                f"({', '.join(str(ZOO[e]) for e in teams)}), which reads Routing-v0's observation; "
                "benchmark Routing-v0's zoo router with --env servegym/Routing-v0")
    rows: list[dict[str, Any]] = []
    for env_id in env_ids:
        rows += bench_env(env_id, a.batch, a.calls, a.seed)
    print(f"one core (cpu {core}), {a.calls} calls per row, load average {os.getloadavg()[0]:.2f}")
    print(f"{'env':<28} {'policy':<17} {'batch':>5} {'p50 us':>9} {'p99 us':>9} {'p50 us/dec':>10} "
          f"{'fallback':>8}")
    for r in rows:
        share = f"{r['fallback_share']:8.2%}" if "fallback_share" in r else ""
        print(f"{r['env']:<28} {r['policy']:<17} {r['batch']:>5} {r['p50_us']:>9.1f} {r['p99_us']:>9.1f} "
              f"{r['p50_us_per_decision']:>10.2f} {share}")
    target = {r["env"]: r["p99_us"] <= TARGET_P99_US for r in rows
              if r["policy"] == "onnx" and r["batch"] == 1}
    for env_id, ok in target.items():
        print(f"target onnx p99 <= {TARGET_P99_US:g} us at batch 1 on one core, {env_id}: {'met' if ok else 'MISSED'}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({
            "core": core, "calls": a.calls, "load_average_1m": os.getloadavg()[0],
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "target_p99_us": TARGET_P99_US, "target_met": target, "rows": rows,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
