"""``python -m hwmodels.validate fit``: fit the `reference` engine profile to the measured iterations.

The profile's fitted terms enter the iteration time linearly, so they are a weighted least-squares
fit (weights 1/measured: relative error), done in two parts that the records separate:

- host time per iteration (wall - GPU time, CUDA events): overhead_s + per_seq_overhead_s * sequences;
- GPU time: linear_scale * (linear + elementwise) + prefill_attn_scale * prefill attention
  + decode_kv_read_scale * decode attention + straggler * longest decode context (capped at the
  split-KV chunk in small batches) + layers * layer_overhead_s + LM head (not scaled).

Fitted on the capacity runs only (all requests at t = 0); the load runs are held out, and `report`
gives the error on them. Kernel-shape terms are not fitted: the CUDA-graph padding rules are the
engine's (hwmodels/validate/engine.py), and the split-KV chunk and batch threshold follow
FlashAttention-2's num_splits heuristic for the engine's graphs (see engine_profiles.toml).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import hwmodels
from hwmodels.profiles import EngineProfile, get_profile
from hwmodels.steptime import build_coeffs, iteration_time

from .measured import Run, load_runs

# coefficient groups of hwmodels.steptime (indices)
GROUPS = {"linear": (0, 1, 16), "prefill_attn": (6, 7), "decode_attn": (8, 9), "straggler": (17,), "lm_head": (10, 11)}
SHAPE = (18, 19, 20, 21, 22, 23)  # padding and split terms: kept in every group


def components(run: Run, model: str, gpu: str, profile: EngineProfile) -> dict[str, np.ndarray]:
    """Per-iteration seconds of each group under `profile`'s kernel shape with unit scales."""
    unit = EngineProfile(name="unit", overhead_s=0.0, layer_overhead_s=0.0, per_seq_overhead_s=0.0,
                         decode_longest_s_per_token_layer=1.0 / hwmodels.get_model(model).layers,
                         decode_split_chunk_tokens=profile.decode_split_chunk_tokens,
                         decode_split_below_seqs=profile.decode_split_below_seqs,
                         pad_decode_multiple=profile.pad_decode_multiple, pad_mixed_pow2=profile.pad_mixed_pow2,
                         pad_mixed_decode_min=profile.pad_mixed_decode_min,
                         pad_mixed_prefill_min=profile.pad_mixed_prefill_min)
    full = build_coeffs(model, gpu, 1, None, unit)
    it = run.it
    out = {}
    for name, idx in GROUPS.items():
        c = np.zeros_like(full)
        c[list(idx) + list(SHAPE)] = full[list(idx) + list(SHAPE)]
        c[20] = c[20] or 1.0
        out[name] = iteration_time(c, it["prefill_tokens"], it["prefill_attn_pairs"], it["decode_seqs"],
                                   it["decode_kv_tokens"], it["longest_decode_context"])
    out["seqs"] = it["decode_seqs"] + np.minimum(it["prefill_tokens"], 1.0)
    return out


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray, names: list[str]) -> dict[str, float]:
    """Weighted least squares with non-negative coefficients (drop negatives and refit)."""
    keep = list(range(X.shape[1]))
    while True:
        coef, *_ = np.linalg.lstsq(X[:, keep] * w[:, None], y * w, rcond=None)
        if np.all(coef >= 0):
            break
        keep.pop(int(np.argmin(coef)))
    out = dict.fromkeys(names, 0.0)
    for j, v in zip(keep, coef):
        out[names[j]] = float(v)
    return out


def fit_reference(runs: list[Run], base: EngineProfile) -> tuple[EngineProfile, dict]:
    """The reference profile fitted on `runs` (kernel shape from `base`); returns it and fit stats."""
    model = runs[0].settings["model"]
    gpu = runs[0].settings["gpu_catalog"]
    layers = hwmodels.get_model(model).layers
    comps = [components(r, model, gpu, base) for r in runs]
    cat = {k: np.concatenate([c[k] for c in comps]) for k in comps[0]}
    wall = np.concatenate([r.iter_s for r in runs])
    gpu_s = np.concatenate([r.it["gpu_s"] for r in runs])
    host = wall - gpu_s
    # relative error, each run weighted equally (short and long runs, both windows)
    w = np.concatenate([np.full(len(r.iter_s), 1.0 / np.sqrt(len(r.iter_s))) for r in runs]) / wall
    h = _wls(np.c_[np.ones_like(host), cat["seqs"]], host, w, ["overhead_s", "per_seq_overhead_s"])
    names = ["linear_scale", "prefill_attn_scale", "decode_kv_read_scale", "straggler", "fixed"]
    X = np.c_[cat["linear"], cat["prefill_attn"], cat["decode_attn"], cat["straggler"], np.ones_like(wall)]
    g = _wls(X, gpu_s - cat["lm_head"], w, names)
    prof = EngineProfile(
        name="reference", overhead_s=h["overhead_s"], layer_overhead_s=g["fixed"] / layers,
        per_seq_overhead_s=h["per_seq_overhead_s"], linear_scale=g["linear_scale"],
        prefill_attn_scale=g["prefill_attn_scale"], decode_kv_read_scale=g["decode_kv_read_scale"],
        decode_longest_s_per_token_layer=g["straggler"] / layers,
        decode_split_chunk_tokens=base.decode_split_chunk_tokens, decode_split_below_seqs=base.decode_split_below_seqs,
        pad_decode_multiple=base.pad_decode_multiple, pad_mixed_pow2=base.pad_mixed_pow2,
        pad_mixed_decode_min=base.pad_mixed_decode_min, pad_mixed_prefill_min=base.pad_mixed_prefill_min,
        description=base.description, sources=base.sources)
    return prof, {"iterations": int(len(wall)), "runs": [r.label for r in runs]}


def iteration_errors(run: Run, profile) -> np.ndarray:
    """Relative error (predicted - measured) / measured of every iteration of `run`."""
    s = run.settings
    c = build_coeffs(s["model"], s["gpu_catalog"], 1, None, profile)
    it = run.it
    pred = iteration_time(c, it["prefill_tokens"], it["prefill_attn_pairs"], it["decode_seqs"],
                          it["decode_kv_tokens"], it["longest_decode_context"])
    return (pred - run.iter_s) / run.iter_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwmodels.validate fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vllm", action="store_true", help="fit the vllm profile to the published points instead")
    a = p.parse_args(argv)
    if a.vllm:
        prof, s = fit_vllm(get_profile("vllm"))
        for k in VLLM_SEARCH:
            print(f"  {k} = {getattr(prof, k)!r}")
        print(f"published: median {s['published_median_abs_err_pct']:.2f}%, max {s['published_max_abs_err_pct']:.1f}% "
              f"over {s['published_points']} points; write these into hwmodels/data/engine_profiles.toml [vllm]")
        return 0
    runs = load_runs()
    train = [r for r in runs if r.kind == "capacity"]
    prof, stats = fit_reference(train, get_profile("reference"))
    print(f"fitted on {stats['iterations']} iterations of {len(train)} capacity runs:")
    for k in ("overhead_s", "layer_overhead_s", "per_seq_overhead_s", "linear_scale", "prefill_attn_scale",
              "decode_kv_read_scale", "decode_longest_s_per_token_layer"):
        print(f"  {k} = {getattr(prof, k)!r}")
    for r in runs:
        e = iteration_errors(r, prof)
        print(f"  {r.label:36s} iteration MAPE {np.mean(np.abs(e)) * 100:5.1f}%  median {np.median(e) * 100:+5.1f}%")
    print("write these values into hwmodels/data/engine_profiles.toml [reference] (with this command as source)")
    return 0


def published_errors(profile: EngineProfile) -> tuple[dict, list]:
    """error_summary and error_table of the published points under `profile`."""
    from . import published as vp  # replays through envs.core (allowed edge, see published.py)

    pts = vp.load_published()
    preds = vp.predict_points(pts, lambda m, g, tp: build_coeffs(m, g, tp, None, profile))
    rows = vp.error_table(pts, preds)
    return vp.error_summary(rows), rows


VLLM_SEARCH = {  # field: candidate values (coordinate search, a few passes)
    "layer_overhead_s": (0.0, 5e-6, 1e-5, 2e-5, 3e-5, 4e-5, 6e-5),
    "overhead_s": (0.0, 2e-4, 5e-4, 1e-3, 2e-3),
    "linear_scale": (0.85, 0.9, 0.95, 1.0, 1.05, 1.1),
    "decode_kv_read_scale": (0.6, 0.8, 1.0, 1.2),
}


def fit_vllm(base: EngineProfile, passes: int = 2, log=print) -> tuple[EngineProfile, dict]:
    """Coordinate search of VLLM_SEARCH minimising the median absolute error over the published
    points (ties: the max). Kernel-shape terms stay as `base` has them."""
    def score(p):
        s, _ = published_errors(p)
        return (round(s["published_median_abs_err_pct"], 3), s["published_max_abs_err_pct"]), s
    best = base
    best_key, best_s = score(best)
    log(f"start: median {best_s['published_median_abs_err_pct']:.2f}%, max {best_s['published_max_abs_err_pct']:.1f}%")
    for _ in range(passes):
        for field_, values in VLLM_SEARCH.items():
            for v in values:
                cand = dataclasses.replace(best, **{field_: v})
                key, s = score(cand)
                if key < best_key:
                    best, best_key, best_s = cand, key, s
                    log(f"  {field_} = {v}: median {s['published_median_abs_err_pct']:.2f}%, "
                        f"max {s['published_max_abs_err_pct']:.1f}%")
    return best, best_s
