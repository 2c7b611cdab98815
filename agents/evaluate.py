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
from agents.policy import heuristic_names, make_policy
from agents.rollout import run_episodes
from envs.metrics import aggregate


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


def evaluate(
    env_id: str,
    policies: list[str],
    trace: str = "default",
    episodes: int = 8,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    split: str = "test",
    progress: bool = True,
    capacity: bool = False,
    capacity_target: float = 0.9,
) -> dict[str, Any]:
    """The evaluation JSON of ../shared/DESIGN.md for ``policies`` on ``env_id``.

    Each policy plays ``episodes`` held-out episodes at every value of the environment's swept
    knob (``vec.sweep()``: load levels, cache capacities ...); metrics are means over episodes,
    per sweep value under ``by_<knob>`` and over all of them under ``metrics``.
    """
    kwargs = dict(env_kwargs or {})
    kwargs.setdefault("split", split)
    kwargs["window_order"] = "sequential"
    kwargs["trace"] = trace
    probe = envs.make_vec(env_id, 1, seed=seed, **kwargs)
    knob, values = probe.sweep()
    slo = slo_of(probe)
    probe.close()
    results = []
    for spec in policies:
        per_value: dict[str, dict[str, float]] = {}
        episodes_all: list[dict[str, float]] = []
        call_s = []
        for value in values:
            vec = envs.make_vec(env_id, episodes, seed=seed, **{**kwargs, knob: value})
            policy = make_policy(spec, vec, env_id, seed=seed)
            eps, lat = run_episodes(vec, policy)
            vec.close()
            per_value[sweep_label(value)] = aggregate(eps)
            episodes_all += eps
            call_s.append(lat)
            if progress:
                m = per_value[sweep_label(value)]
                shown = ", ".join(f"{k} {m[k]:.4g}" for k in probe.table_metrics[:2] if k in m)
                print(f"  {spec:>18} {knob} {sweep_label(value)}: {shown}", file=sys.stderr, flush=True)
        metrics = aggregate(episodes_all)
        lat_all = np.concatenate(call_s)
        # One call decides for the whole batch; per decision = per call / batch size.
        metrics["decision_latency_us_p50"] = float(np.percentile(lat_all, 50)) * 1e6 / episodes
        metrics["decision_latency_us_p99"] = float(np.percentile(lat_all, 99)) * 1e6 / episodes
        metrics.pop(knob, None)
        entry: dict[str, Any] = {"policy": spec, "metrics": metrics}
        if capacity:
            from agents.capacity_search import effective_capacity

            found = effective_capacity(env_id, spec, episodes, seed, kwargs, capacity_target,
                                       progress=progress)
            metrics["effective_capacity_rps"] = found["offered_rps"]
            entry["capacity_search"] = found
        if len(values) > 1:
            entry[f"by_{knob}"] = per_value
        results.append(entry)
    report = {
        "env": env_id,
        "trace": trace if isinstance(trace, str) else "<Trace>",
        "env_kwargs": {k: v for k, v in kwargs.items() if k != "trace"},
        "seed": seed,
        "episodes": episodes,
        "split": kwargs["split"],
        "sweep": {"key": knob, "values": [sweep_label(v) for v in values]},
        "table_metrics": list(probe.table_metrics),
        "results": results,
    }
    if slo is not None:
        report["slo"] = slo
    return report


def slo_of(vec: Any) -> dict[str, Any] | None:
    """The SLO an environment counts (``{"metric", "ttft_s", "tpot_s"}``, seconds), or None for
    environments without one: ``config.slo_metric`` and the limits its scenario resolved."""
    metric = getattr(getattr(vec, "config", None), "slo_metric", None)
    if metric is None:
        return None
    sc = getattr(vec, "scenario", None)
    eng = getattr(sc, "engine", sc)
    return {"metric": metric, "ttft_s": float(eng.slo_ttft), "tpot_s": float(eng.slo_tpot)}


def sweep_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_table(report: dict[str, Any], value: str | None = None) -> str:
    """Markdown table of the report (at one sweep value when ``value`` is given)."""
    cols = report["table_metrics"]
    by = f"by_{report['sweep']['key']}"
    head = "| policy | " + " | ".join(cols) + " |"
    rows = [head, "|" + "---|" * (len(cols) + 1)]
    for r in report["results"]:
        m = r[by][value] if value is not None and by in r else r["metrics"]
        cells = []
        for k in cols:
            v = m.get(k, float("nan"))
            cells.append(f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}")
        rows.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def print_tables(report: dict[str, Any], file: Any = None) -> None:
    """One table per sweep value (a single table when the sweep has one value)."""
    knob, values = report["sweep"]["key"], report["sweep"]["values"]
    for v in values:
        print(f"\n{report['env']}  trace={report['trace']}  {knob}={v}  split={report['split']}  "
              f"episodes={report['episodes']}  seed={report['seed']}", file=file)
        print(format_table(report, v if len(values) > 1 else None), file=file)


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
    p.add_argument("--capacity", action="store_true",
                   help="also search each policy's effective capacity (highest rate with SLO "
                        "attainment >= --capacity-target; environments with a capacity_knob)")
    p.add_argument("--capacity-target", type=float, default=0.9)
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error("--episodes must be >= 1")
    policies = a.policy or ["random", *heuristic_names(a.env)]
    report = evaluate(a.env, policies, a.trace, a.episodes, a.seed, parse_env_kwargs(a.env_kwargs),
                      a.split, capacity=a.capacity, capacity_target=a.capacity_target)
    print_tables(report)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
