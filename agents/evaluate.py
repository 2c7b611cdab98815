"""Score policies on the same scenarios: held-out windows, same seeds, same load levels.

    python -m agents.evaluate --env servegym/KVAdmission-v0 --trace default \
        --policy vllm_fcfs --policy sarathi --episodes 8 --seed 0 --env-kwargs load=1.1 --json out.json

Every policy replays the same windows in the same order (``window_order=sequential``, env i
starts with held-out window i), so differences come from the policy alone.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import envs
from agents.policy import Policy, heuristic_names, make_policy
from envs.metrics import aggregate

# Metric columns of the printed table (all are in the JSON).
TABLE_METRICS = (
    "slo_attainment", "goodput_rps", "ttft_p50_s", "ttft_p99_s", "tbt_p99_s", "e2e_p99_s",
    "throughput_tok_s", "preemptions", "return_mean",
)


def parse_env_kwargs(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are Python literals where they parse (1.1, true, (0.7,0.9))."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--env-kwargs {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        low = raw.strip().lower()
        if low in ("true", "false"):
            value: Any = low == "true"
        else:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw
        if isinstance(value, list):
            value = tuple(value)
        out[key.strip()] = value
    return out


def run_episodes(vec: Any, policy: Policy) -> tuple[list[dict[str, float]], float]:
    """Run each env of ``vec`` through its first episode; metrics per episode and the policy's
    median decision latency per batch (seconds)."""
    obs = vec.reset()
    E = vec.num_envs
    results: list[dict[str, float] | None] = [None] * E
    lat = []
    while any(r is None for r in results):
        mask = vec.action_masks()
        t = time.perf_counter()
        actions = policy.act(obs, mask)
        lat.append(time.perf_counter() - t)
        obs, _, dones, infos = vec.step(np.asarray(actions))
        for e in np.flatnonzero(dones):
            if results[e] is None:
                m = dict(infos[e]["metrics"])
                m["return_mean"] = infos[e]["episode"]["r"]
                results[e] = m
    return [r for r in results if r is not None], float(np.median(lat))


def evaluate(
    env_id: str,
    policies: list[str],
    trace: str = "default",
    episodes: int = 8,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    split: str = "test",
    progress: bool = True,
) -> dict[str, Any]:
    """The evaluation JSON of ../shared/DESIGN.md for ``policies`` on ``env_id``."""
    kwargs = dict(env_kwargs or {})
    kwargs.setdefault("split", split)
    kwargs["window_order"] = "sequential"
    kwargs["trace"] = trace
    probe = envs.make_vec(env_id, 1, seed=seed, **kwargs)
    loads = probe.config.loads()
    results = []
    for spec in policies:
        per_load: dict[str, dict[str, float]] = {}
        episodes_all: list[dict[str, float]] = []
        decision_s = []
        for load in loads:
            vec = envs.make_vec(env_id, episodes, seed=seed, **{**kwargs, "load": load})
            policy = make_policy(spec, vec, env_id, seed=seed)
            eps, lat = run_episodes(vec, policy)
            per_load[f"{load:g}"] = aggregate(eps)
            episodes_all += eps
            decision_s.append(lat)
            if progress:
                m = per_load[f"{load:g}"]
                print(f"  {spec:>14} load {load:g}: slo {m['slo_attainment']:.3f} "
                      f"goodput {m['goodput_rps']:.2f} rps", file=sys.stderr, flush=True)
        metrics = aggregate(episodes_all)
        metrics["decision_latency_s_median_batch"] = float(np.median(decision_s))
        metrics.pop("load", None)
        entry: dict[str, Any] = {"policy": spec, "metrics": metrics}
        if len(loads) > 1:
            entry["by_load"] = per_load
        results.append(entry)
    return {
        "env": env_id,
        "trace": trace,
        "env_kwargs": dict(kwargs),
        "seed": seed,
        "episodes": episodes,
        "split": kwargs["split"],
        "loads": list(loads),
        "results": results,
    }


def format_table(report: dict[str, Any], load: str | None = None) -> str:
    """Markdown table of the report (one load's column set when ``load`` is given)."""
    head = "| policy | " + " | ".join(TABLE_METRICS) + " |"
    rows = [head, "|" + "---|" * (len(TABLE_METRICS) + 1)]
    for r in report["results"]:
        m = r["by_load"][load] if load is not None and "by_load" in r else r["metrics"]
        cells = []
        for k in TABLE_METRICS:
            v = m.get(k, float("nan"))
            cells.append(f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}")
        rows.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="servegym/KVAdmission-v0")
    p.add_argument("--trace", default="default", help="built-in trace name or path to a trace file")
    p.add_argument("--policy", action="append", required=False,
                   help="heuristic name, random, zoo, or SB3 checkpoint path (repeatable); "
                        "default: every heuristic and random")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--split", default="test", choices=("train", "test", "all"))
    p.add_argument("--json", type=Path, help="write the results here")
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error("--episodes must be >= 1")
    policies = a.policy or ["random", *heuristic_names(a.env)]
    report = evaluate(a.env, policies, a.trace, a.episodes, a.seed, parse_env_kwargs(a.env_kwargs),
                      a.split)
    for load in report["loads"]:
        print(f"\n{a.env}  trace={a.trace}  load={load:g}  split={report['split']}  "
              f"episodes={a.episodes}  seed={a.seed}")
        print(format_table(report, f"{load:g}" if len(report["loads"]) > 1 else None))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
