"""A sweep's results: every trial, each configuration's mean over seeds with a 95% CI, the best.

``summarize`` turns trial records (one per training run: configuration, seed, status, held-out
main metric) into the sweep JSON; ``markdown`` renders its tables. The CI over training seeds is
Student's t interval, mean +- t(0.975, n-1) * s / sqrt(n) (s the sample standard deviation; the
standard interval for a mean of a few independent runs, e.g. Henderson et al., "Deep
Reinforcement Learning that Matters", AAAI 2018); with one successful seed there is no interval.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def seed_ci(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t interval of per-seed values. ``{"mean", "ci95": [lo, hi] | None, "std",
    "n"}``; NaN values (failed runs) are not allowed here: filter them first."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return {"mean": None, "ci95": None, "std": None, "n": 0}
    if not np.all(np.isfinite(x)):
        raise ValueError(f"seed_ci: non-finite values {x.tolist()}")
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "ci95": None, "std": None, "n": 1}
    from scipy.stats import t

    std = float(x.std(ddof=1))
    half = float(t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
    return {"mean": mean, "ci95": [mean - half, mean + half], "std": std, "n": int(x.size)}


def config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=repr)


def summarize(trials: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """Group trial records by configuration (in first-seen order); per group the seeds' metric
    mean and CI over the trials that finished (``status == "ok"``), and counts of the others.
    The best configuration is the best mean among groups with every seed finished (else among
    all groups with a mean); ``None`` when no trial finished."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    groups: dict[str, dict[str, Any]] = {}
    for t in trials:
        g = groups.setdefault(config_key(t["config"]), {"config": t["config"], "trials": []})
        g["trials"].append(t)
    configs = []
    for i, g in enumerate(groups.values()):
        ok = [t for t in g["trials"] if t["status"] == "ok"]
        stats = seed_ci([t["metric"] for t in ok])
        entry = {
            "config_id": i, "config": g["config"], metric: stats,
            "seeds": sorted(t["seed"] for t in ok),
            "failed": sorted((t["seed"] for t in g["trials"] if t["status"] != "ok"),
                             key=lambda s: (s is None, s or 0)),
        }
        per = [t["by_sweep"] for t in ok if t.get("by_sweep")]
        if per and len(per) == len(ok):
            labels = list(per[0]["values"])
            entry["by_sweep"] = {"key": per[0]["key"], "values": {
                label: seed_ci([b["values"][label] for b in per]) for label in labels}}
        configs.append(entry)
    sign = 1.0 if mode == "max" else -1.0
    scored = [c for c in configs if c[metric]["mean"] is not None]
    complete = [c for c in scored if not c["failed"]]
    pool = complete or scored
    best = max(pool, key=lambda c: (sign * c[metric]["mean"], -c["config_id"])) if pool else None
    return {"metric": metric, "mode": mode, "trials": trials, "configs": configs,
            "best_config_id": None if best is None else best["config_id"]}


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.4g}"


def _cfg_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items()) or "(recipe)"


def markdown(summary: dict[str, Any]) -> str:
    """Two Markdown tables: every trial, then every configuration with its CI over seeds."""
    m = summary["metric"]
    lines = [f"### Trials (held-out {m})", "", "| trial | config | seed | status | "
             f"{m} | steps | error |", "|---|---|---|---|---|---|---|"]
    for t in summary["trials"]:
        err = (t.get("error") or "").replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| {t['trial_id']} | {_cfg_text(t['config'])} | {t['seed']} | {t['status']} | "
                     f"{_fmt(t.get('metric'))} | {t.get('timesteps') or '-'} | {err} |")
    lines += ["", f"### Configurations (mean held-out {m} over seeds, 95% t interval)", "",
              f"| config | {m} | 95% CI | seeds ok | seeds failed |", "|---|---|---|---|---|"]
    for c in summary["configs"]:
        s = c[m]
        ci = "-" if s["ci95"] is None else f"[{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}]"
        best = " **best**" if c["config_id"] == summary["best_config_id"] else ""
        lines.append(f"| {_cfg_text(c['config'])}{best} | {_fmt(s['mean'])} | {ci} | "
                     f"{','.join(map(str, c['seeds'])) or '-'} | {','.join(map(str, c['failed'])) or '-'} |")
    per = [c for c in summary["configs"] if c.get("by_sweep")]
    if per:
        key = per[0]["by_sweep"]["key"]
        lines += ["", f"### Per {key} (mean held-out {m} over seeds, 95% t interval)", "",
                  f"| config | {key} | {m} | 95% CI |", "|---|---|---|---|"]
        for c in per:
            for label, s in c["by_sweep"]["values"].items():
                ci = "-" if s["ci95"] is None else f"[{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}]"
                lines.append(f"| {_cfg_text(c['config'])} | {label} | {_fmt(s['mean'])} | {ci} |")
    return "\n".join(lines) + "\n"


__all__ = ["config_key", "markdown", "seed_ci", "summarize"]
