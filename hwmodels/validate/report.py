"""``python -m hwmodels.validate report [--json FILE] [--plot PNG]``: every fidelity figure, recomputed
from the committed data (CPU).

- Reference engine on the H200 (hwmodels/validate/data/h200), `reference` profile: per load run,
  the step-time model's per-iteration MAPE (these runs are held out of the profile's fit, which
  uses the capacity runs) and the simulator's per-request TTFT / TPOT / E2E p50 and p90 errors.
- Published vLLM / SGLang measurements (hwmodels/data/published_results.toml), `vllm` profile:
  error per point and metric, median and max absolute error.

- The engine's own run-to-run spread (hwmodels/validate/data/h200_repeat: the same Mooncake window
  replayed again at the same rates in a later session): per metric and percentile, how far a
  repeat's measured value lies from the original's. It says how much of a model error can be noise.

JSON keys: iteration_mape_pct (worst load run), iteration_mape_floor_pct (the largest floor of a load
run: the iteration MAPE that no model of the recorded loads can beat, hwmodels/validate/floor.py),
request_p50_max_abs_err_pct and
request_p90_max_abs_err_pct (worst of TTFT/TPOT/E2E over the load runs), published_median_abs_err_pct,
published_max_abs_err_pct, published_points (points in the summary), published_excluded_points (ids
listed but left out, each with its reason in the data file), engine_repeat_runs,
engine_repeat_p50_max_abs_diff_pct and engine_repeat_p90_max_abs_diff_pct (largest spread of a
repeat from the original over TTFT/TPOT/E2E), plus the per-run and per-point tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hwmodels.profiles import get_profile

from .compare import METRICS, compare_all, format_rows, simulate
from .outpath import check_writable
from .measured import DATA_DIR, REPEAT_DIR, Run, load_runs, truncated_runs

REFERENCE_PROFILE = "reference"
PUBLISHED_PROFILE = "vllm"


def engine_summary(rows: list[dict]) -> dict:
    worst = lambda q: max(abs(r["requests_metrics"][m][q]["err_pct"]) for r in rows for m in METRICS)  # noqa: E731
    return {"iteration_mape_pct": max(r["iteration_mape_pct"] for r in rows),
            "iteration_mape_floor_pct": max(r["iteration_mape_floor_pct"] for r in rows),
            "request_p50_max_abs_err_pct": worst("p50"), "request_p90_max_abs_err_pct": worst("p90")}


def repeat_spread(original: list[Run], repeats: list[Run]) -> dict:
    """How far each repeated load run's measured TTFT / TPOT / E2E p50 and p90 lie from the original
    run of the same window at the same rate (relative, %): the engine's own noise, which bounds how
    closely any model can be judged. Raises ValueError for a repeat with no original to compare."""
    rows = []
    for rep in (r for r in repeats if r.kind == "load"):
        match = [o for o in original if o.kind == "load" and o.window == rep.window
                 and np.isclose(o.rate_rps, rep.rate_rps, rtol=1e-12)]
        if not match:
            raise ValueError(f"repeat {rep.file} {rep.label}: no original run of {rep.window} at rate {rep.rate_rps!r}")
        a, b = match[0].request_metrics(), rep.request_metrics()
        diff = {m: {f"p{q}": 100.0 * (np.nanpercentile(b[m], q) / np.nanpercentile(a[m], q) - 1.0) for q in (50, 90)}
                for m in METRICS}
        rows.append({"window": rep.window, "load": match[0].load, "diff_pct": diff,
                     "iteration_median_diff_pct": 100.0 * (np.median(rep.iter_s) / np.median(match[0].iter_s) - 1.0)})
    worst = lambda q: max((abs(r["diff_pct"][m][q]) for r in rows for m in METRICS), default=float("nan"))  # noqa: E731
    return {"engine_repeat_runs": rows, "engine_repeat_p50_max_abs_diff_pct": worst("p50"),
            "engine_repeat_p90_max_abs_diff_pct": worst("p90")}


def published_summary(profile: str = PUBLISHED_PROFILE) -> tuple[dict, list, str]:
    from . import published as vp
    from .fit import published_errors

    s, rows = published_errors(get_profile(profile))
    return s, rows, vp.format_table(vp.load_published(), rows)


def plot_cdfs(out: Path, data_dir: Path = DATA_DIR, profile: str = REFERENCE_PROFILE) -> Path:
    """Measured vs simulated per-request TTFT, TPOT and E2E CDFs of every load run (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs = [r for r in load_runs(data_dir) if r.kind == "load"]
    windows = sorted({r.window for r in runs})
    fig, axes = plt.subplots(len(windows), 3, figsize=(13, 3.6 * len(windows)), squeeze=False)
    colors = {0.3: "tab:green", 0.6: "tab:orange", 0.85: "tab:red"}
    for i, w in enumerate(windows):
        for r in sorted((r for r in runs if r.window == w), key=lambda r: r.load):
            meas, sim = r.request_metrics(), simulate(r, profile)
            for j, m in enumerate(METRICS):
                ax = axes[i, j]
                c = colors.get(round(r.load, 2), "k")
                for vals, ls, lab in ((meas[m], "-", "measured"), (sim[m], "--", "simulated")):
                    v = np.sort(vals[np.isfinite(vals)]) * 1e3
                    ax.plot(v, np.arange(1, len(v) + 1) / len(v), ls, color=c, label=f"load {r.load:.2f} {lab}")
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.set_title(f"{w}: {m.upper()}")
                ax.set_xlabel("ms")
                ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel("share of requests")
        axes[i, 0].legend(fontsize=7)
    fig.suptitle(f"Reference engine on an H200 (solid) vs servegym simulator, profile '{profile}' (dashed)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwmodels.validate report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--plot", default=None, help="write the CDF plot (PNG) here")
    p.add_argument("--data", default=str(DATA_DIR))
    p.add_argument("--repeat-data", default=str(REPEAT_DIR), help="repeated runs of the same windows and rates")
    a = p.parse_args(argv)
    check_writable(a.json, "--json")
    check_writable(a.plot, "--plot")
    rows = compare_all(a.data, REFERENCE_PROFILE)
    eng = engine_summary(rows)
    print(f"Reference engine (H200), profile '{REFERENCE_PROFILE}', load runs (held out of the fit):")
    print(format_rows(rows))
    left_out = truncated_runs(a.data)
    for t in left_out:
        print(f"left out, stopped at the engine's time budget (run --budget-s), not evidence: {t}")
    spread = repeat_spread(load_runs(a.data), load_runs(a.repeat_data))
    print("\nThe engine against itself: a repeat's measured value against the original run's")
    print("| window | load | median iteration | TTFT p50 / p90 | TPOT p50 / p90 | E2E p50 / p90 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in spread["engine_repeat_runs"]:
        cells = [f"{r['diff_pct'][m]['p50']:+.1f}% / {r['diff_pct'][m]['p90']:+.1f}%" for m in METRICS]
        print(f"| {r['window']} | {r['load']:.2f} | {r['iteration_median_diff_pct']:+.1f}% | " + " | ".join(cells) + " |")
    pub, pub_rows, table = published_summary()
    print(f"\nPublished measurements, profile '{PUBLISHED_PROFILE}':")
    print(table)
    out = {**eng, **spread, "published_median_abs_err_pct": pub["published_median_abs_err_pct"],
           "published_max_abs_err_pct": pub["published_max_abs_err_pct"], "published_points": pub["published_points"],
           "published_comparisons": pub["published_comparisons"],
           "published_excluded_points": pub["excluded_points"], "reference_profile": REFERENCE_PROFILE,
           "published_profile": PUBLISHED_PROFILE, "engine_runs": rows, "truncated_runs_left_out": left_out, "published_by_metric": pub["by_metric"],
           "published_rows": pub_rows}
    print("\n" + "\n".join(f"{k}: {out[k]:.2f}" if isinstance(out[k], float) else f"{k}: {out[k]}"
                           for k in ("iteration_mape_pct", "iteration_mape_floor_pct", "request_p50_max_abs_err_pct", "request_p90_max_abs_err_pct",
                                     "engine_repeat_p50_max_abs_diff_pct", "engine_repeat_p90_max_abs_diff_pct",
                                     "published_median_abs_err_pct", "published_max_abs_err_pct", "published_points",
                                     "published_excluded_points")))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1, default=float) + "\n")
        print(f"wrote {a.json}")
    if a.plot:
        print(f"wrote {plot_cdfs(Path(a.plot), Path(a.data))}")
    return 0
