"""``python -m hwmodels.validate compare [DIR]``: the measured runs replayed through the simulator.

For every load run of the reference engine (hwmodels/validate/data/h200, or DIR), the same
requests (prompt and output lengths) arrive at the same times at one simulated replica of
``envs.core`` configured as the engine was (model, GPU, token budget, block size, KV capacity,
max running requests; the `reference` engine profile by default), and the per-request TTFT, TPOT
and E2E percentiles are compared with the measured ones. The step-time model is also evaluated on
every measured iteration (its loads as the engine recorded them).

This is the one module of hwmodels that imports envs (the simulator it validates); the CLI loads it
lazily and tests/test_import_graph.py allows exactly this edge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import hwmodels

from .fit import iteration_errors
from .floor import iteration_floor
from .outpath import check_writable
from .measured import DATA_DIR, Run, load_runs

METRICS = ("ttft", "tpot", "e2e")
PCTS = (50, 90, 99)


def _engine(run: Run, profile):
    from envs.core.engine import EngineSpec

    s = run.settings
    return EngineSpec(model=s["model"], gpu=s["gpu_catalog"], tp=1, block_size=s["block_size"],
                      max_seqs=s["max_seqs"], capacity_blocks=s["capacity_blocks"], max_output=int(run.output.max()),
                      profile=profile).build()


def simulate(run: Run, profile: str | hwmodels.EngineProfile | None = "reference") -> dict[str, np.ndarray]:
    """Replay `run`'s requests at their measured arrival times through envs.core; per-request
    TTFT, TPOT, E2E in seconds (NaN where a request did not finish) and the iteration count."""
    from envs.core import state as S
    from envs.core.replica import ORDER_FCFS, enqueue, reset_env_state, reset_replica, run_iteration

    eng = _engine(run, profile)
    n = len(run.arrival_s)
    order = np.argsort(run.arrival_s, kind="stable")
    if np.any(order != np.arange(n)):
        raise ValueError(f"{run.file} {run.label}: requests are not in arrival order")
    wl = S.Workload(arrival_s=run.arrival_s[None, :].copy(), prompt=run.prompt[None, :].astype(np.int32),
                    output=run.output[None, :].astype(np.int32), pred_bucket=np.zeros((1, n), np.int8),
                    n_requests=np.array([n], np.int32), chain_ids=np.full((1, n, 1), -1, np.int64),
                    chain_len=np.zeros((1, n), np.int16), failed=np.zeros((1, n), np.bool_))
    st = S.allocate(1, 1, n, n, 1)
    reset_env_state(st, 0, 0, 1.0)
    reset_replica(st, eng, 0, 0)
    budget = int(run.settings["budget"])
    now, nxt, iters = 0.0, 0, 0
    while True:
        while nxt < n and run.arrival_s[nxt] <= now:
            enqueue(st, wl, eng, 0, 0, nxt)
            nxt += 1
        if st.n_running[0, 0] + st.n_queued[0, 0] == 0:
            if nxt >= n:
                break
            now = float(run.arrival_s[nxt])
            continue
        dt = run_iteration(st, wl, eng, 0, 0, eng.max_seqs, budget, False, ORDER_FCFS, now)
        if dt == 0.0:
            if nxt >= n:
                raise RuntimeError(f"{run.label}: the simulator cannot schedule a queued request")
            now = float(run.arrival_s[nxt])
            continue
        now += dt
        iters += 1
    ttft, e2e = st.ttft[0].copy(), st.e2e[0].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(run.output > 1, (e2e - ttft) / (run.output - 1), np.nan)
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e, "iterations": iters}


def compare_run(run: Run, profile="reference") -> dict:
    """Errors of one load run: per-iteration (step-time model) and per-request percentiles (simulator)."""
    e = iteration_errors(run, profile)
    meas = run.request_metrics()
    sim = simulate(run, profile)
    out = {"window": run.window, "file": run.file, "load": run.load, "rate_rps": run.rate_rps,
           "requests": int(len(run.arrival_s)), "iterations_measured": int(len(e)),
           "iterations_simulated": int(sim["iterations"]),
           "iteration_mape_pct": float(np.mean(np.abs(e)) * 100), "iteration_median_err_pct": float(np.median(e) * 100),
           "iteration_mape_floor_pct": float(np.mean(iteration_floor(run)) * 100),
           "requests_metrics": {}}
    for m in METRICS:
        a, b = meas[m], sim[m]
        ok = np.isfinite(a) & np.isfinite(b)
        row = {}
        for q in PCTS:
            pa, pb = float(np.percentile(a[ok], q)), float(np.percentile(b[ok], q))
            row[f"p{q}"] = {"measured_s": pa, "simulated_s": pb, "err_pct": 100.0 * (pb - pa) / pa}
        out["requests_metrics"][m] = row
    return out


def compare_all(data_dir: str | Path = DATA_DIR, profile="reference") -> list[dict]:
    return [compare_run(r, profile) for r in load_runs(data_dir) if r.kind == "load"]


def format_rows(rows: list[dict]) -> str:
    lines = ["| window | load | iteration MAPE (floor) | TTFT p50 / p90 | TPOT p50 / p90 | E2E p50 / p90 |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cells = [f"{r['requests_metrics'][m]['p50']['err_pct']:+.1f}% / {r['requests_metrics'][m]['p90']['err_pct']:+.1f}%"
                 for m in METRICS]
        lines.append(f"| {r['window']} | {r['load']:.2f} | {r['iteration_mape_pct']:.1f}% ({r['iteration_mape_floor_pct']:.1f}%) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwmodels.validate compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", default=str(DATA_DIR), help="folder of run outputs (*.json.gz)")
    p.add_argument("--profile", default="reference", help="engine profile (hwmodels/data/engine_profiles.toml) "
                   "or 'none' for the calibration alone")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    check_writable(a.json, "--json")
    prof = None if a.profile == "none" else a.profile
    rows = compare_all(a.dir, prof)
    print(format_rows(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0
