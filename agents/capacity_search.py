"""Effective capacity: the highest arrival rate a policy serves with SLO attainment >= target.

    python -m agents.evaluate --env servegym/Routing-v0 --policy jsq --capacity [--capacity-target 0.9]

The definition is DistServe's and DualMap's (DESIGN.md, "Metrics"). Any environment whose VecEnv
names a ``capacity_knob`` (a config field that multiplies the arrival rate, e.g. ``rate_scale``)
and reports ``offered_rps`` and ``slo_attainment`` in its episode metrics can be searched.
Attainment is the mean over the same held-out episodes at every rate (``window_order=
sequential``); it is searched on a log scale: bracket by doubling/halving from the env's
``capacity_start()``, then bisect. The answer is the offered rate at the highest knob value that
met the target (a lower bound on the true crossing, within the final bracket's width).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import envs
from agents.policy import make_policy
from agents.rollout import run_episodes
from envs.metrics import aggregate


def attainment_curve_point(env_id: str, spec: str, value: float, knob: str, episodes: int, seed: int,
                           kwargs: dict[str, Any]) -> dict[str, float]:
    """Mean episode metrics of ``spec`` with the rate knob at ``value``."""
    vec = envs.make_vec(env_id, episodes, seed=seed, **{**kwargs, knob: value})
    eps, _ = run_episodes(vec, make_policy(spec, vec, env_id, seed=seed))
    vec.close()
    return aggregate(eps)


def search(measure: Callable[[float], dict[str, float]], start: float, target: float = 0.9,
           bisections: int = 5, max_doublings: int = 8) -> dict[str, Any]:
    """Highest knob value whose ``measure(value)["slo_attainment"] >= target`` (log-scale search).

    Returns ``{"value", "offered_rps", "points": [(value, attainment, offered_rps), ...]}``;
    value/offered_rps are 0 when even the lowest probed rate misses the target.
    """
    if not start > 0:
        raise ValueError(f"capacity search: start must be > 0, got {start}")
    if not 0 < target <= 1:
        raise ValueError(f"capacity search: target attainment must be in (0, 1], got {target}")
    points: list[tuple[float, float, float]] = []

    def probe(x: float) -> bool:
        m = measure(x)
        points.append((x, m["slo_attainment"], m["offered_rps"]))
        return m["slo_attainment"] >= target

    lo = hi = None
    x = start
    if probe(x):
        lo = x
        for _ in range(max_doublings):
            x *= 2.0
            if not probe(x):
                hi = x
                break
            lo = x
    else:
        hi = x
        for _ in range(max_doublings):
            x /= 2.0
            if probe(x):
                lo = x
                break
            hi = x
    if lo is not None and hi is not None:
        for _ in range(bisections):
            mid = float(np.sqrt(lo * hi))
            if probe(mid):
                lo = mid
            else:
                hi = mid
    best = [p for p in points if lo is not None and p[0] == lo]
    return {"value": lo or 0.0, "offered_rps": best[0][2] if best else 0.0,
            "bracket": [lo or 0.0, hi if hi is not None else float("inf")],
            "points": sorted(points)}


def effective_capacity(env_id: str, spec: str, episodes: int, seed: int, kwargs: dict[str, Any],
                       target: float = 0.9, bisections: int = 5, progress: bool = True) -> dict[str, Any]:
    """Search ``spec``'s effective capacity on ``env_id`` (kwargs as agents.evaluate builds them)."""
    probe_vec = envs.make_vec(env_id, 1, seed=seed, **kwargs)
    knob = getattr(probe_vec, "capacity_knob", None)
    if knob is None or not hasattr(probe_vec, "capacity_start"):
        raise ValueError(f"{env_id} has no capacity_knob/capacity_start: effective capacity is not defined")
    start = probe_vec.capacity_start()
    probe_vec.close()
    kwargs = {k: v for k, v in kwargs.items() if k not in ("load", knob)}

    def measure(x: float) -> dict[str, float]:
        m = attainment_curve_point(env_id, spec, x, knob, episodes, seed, kwargs)
        if progress:
            print(f"  {spec:>18} {knob} {x:.4g}: slo_attainment {m['slo_attainment']:.4f} at "
                  f"{m['offered_rps']:.4g} req/s", file=sys.stderr, flush=True)
        return m

    out = search(measure, start, target, bisections)
    out["knob"] = knob
    return out


if __name__ == "__main__":  # `python -m agents.capacity_search ...` exited 0 having done nothing
    print("python -m agents.capacity_search: not a command; the search runs as python -m agents.evaluate --env ID "
          "--policy P --capacity [--capacity-target T]", file=sys.stderr)
    sys.exit(2)
