"""``python -m hwmodels.validate waves``: decode attention timed by its thread blocks' waves, tested.

A hypothesis for the Mooncake misses (issue 15): FlashAttention-2's decode grid is (query blocks,
batch x KV heads) x splits (GQA decode runs swapped: one query block); its thread blocks (CTAs) land
on the SMs in waves of SM_SLOTS (2 per SM), so decode attention takes, per wave, as long as its
longest CTA, not total KV / bandwidth nor the longest sequence alone. Here every CTA's work is built
from the real grid: the padded decode batch the engine ran (pad_decode; padding sequences read 1
token), the split count of flash_api.cpp's num_splits_heuristic (hwmodels.profiles.fa2_num_splits)
for max_seqlen_k = the profile's decode_split_kv_tokens, and each CTA's share of its sequence's
context (split s covers blocks [s x per, (s+1) x per) of 128 tokens, empty CTAs exit), with the
per-sequence contexts rebuilt from the records (measured.decode_contexts), in launch order
(flash_fwd_launch_template.h: grid (m blocks, splits, batch x heads)). Two schedules:

  wave   sum over waves (SM_SLOTS CTAs in launch order) of the longest CTA of the wave
  list   greedy list scheduling: each CTA starts on the first free slot (the makespan)

Either replaces the profile's two straggler terms (tokens x a fitted per-token rate; the KV-read term
stays), refitted like ``fit`` on the capacity runs only; the held-out load runs give the verdict.
Measured (this command with ``--data hwmodels/validate/data/h200_scheduler_order/h200``, the runs it
was written for): both are far worse than the profile, on the capacity runs they are fitted to as on
the held-out load runs (Mooncake iteration MAPE 6.0-17.7% against 4.1-6.5%; 11.6-17.7% at the
capacity runs and loads 0.6 / 0.85, 6.0 / 9.0% (list / wave) at load 0.3), so the profile keeps its
split-capped longest-context straggler; on the current runs (decodes longest first) the same holds
(Mooncake 5.5-16.8% against 2.7-3.7%; 11.3-16.8% above load 0.3).
"""

from __future__ import annotations

import argparse
import heapq

import numpy as np

import hwmodels
from hwmodels.profiles import FA2_SPLITKV_BLOCK_N, EngineProfile, fa2_num_splits, get_profile

from .fit import components, fit_gpu_terms, gpu_model
from .measured import DATA_DIR, Run, decode_contexts, load_runs

MODES = ("wave", "list")


def cta_tokens(contexts: list[int], padded: int, kv_heads: int, max_seqlen_k: int, sm_slots: int) -> np.ndarray:
    """KV tokens each CTA of one decode call reads, in launch order (float [padded x kv_heads x splits]):
    sequence-major, then head, then split. `contexts`: the real sequences (batch order); the engine
    pads to `padded` with 1-token sequences. ValueError if padded < len(contexts)."""
    if padded < len(contexts) or kv_heads < 1 or max_seqlen_k < 1 or sm_slots < 1:
        raise ValueError(f"cta_tokens: need padded >= {len(contexts)} sequences and positive sizes, got "
                         f"padded={padded}, kv_heads={kv_heads}, max_seqlen_k={max_seqlen_k}, sm_slots={sm_slots}")
    nb = -(-max_seqlen_k // FA2_SPLITKV_BLOCK_N)
    splits = fa2_num_splits(padded * kv_heads, sm_slots, nb)
    per = -(-nb // splits) * FA2_SPLITKV_BLOCK_N
    lens = np.asarray(list(contexts) + [1] * (padded - len(contexts)), dtype=np.float64)
    lo = np.arange(splits) * per
    work = np.clip(lens[:, None] - lo[None, :], 0.0, per)  # [sequences, splits]
    return np.repeat(work[:, None, :], kv_heads, axis=1).reshape(-1)


def makespan(work: np.ndarray, sm_slots: int, mode: str) -> float:
    """Tokens of the critical path of CTAs `work` (launch order) on `sm_slots` slots (see the module
    docstring for the modes). ValueError for an unknown mode."""
    if mode == "wave":
        return float(sum(work[i:i + sm_slots].max() for i in range(0, len(work), sm_slots)))
    if mode == "list":
        if len(work) <= sm_slots:
            return float(work.max())
        free = [0.0] * sm_slots
        for x in work:
            heapq.heappush(free, heapq.heappop(free) + x)
        return float(max(free))
    raise ValueError(f"makespan: mode must be one of {MODES}, got {mode!r}")


def wave_tokens(run: Run, profile: EngineProfile, mode: str) -> np.ndarray:
    """Per iteration of `run`, the decode call's critical path in KV tokens (0 without decodes)."""
    kv_heads = hwmodels.get_model(run.settings["model"]).kv_heads
    slots, maxk = int(profile.decode_split_sm_slots), int(profile.decode_split_kv_tokens)
    if slots < 1 or maxk < 1:
        raise ValueError(f"wave_tokens: profile {profile.name!r} sets no split-KV kernel shape "
                         "(decode_split_sm_slots, decode_split_kv_tokens)")
    pad = run.it["pad_decode"]
    return np.array([makespan(cta_tokens(c, int(pad[j]), kv_heads, maxk, slots), slots, mode) if c else 0.0
                     for j, c in enumerate(decode_contexts(run))])


def evaluate(runs: list[Run], mode: str, base: EngineProfile | None = None) -> tuple[dict, list[dict]]:
    """Fit the GPU terms with the `mode` critical path as the decode straggler on the capacity runs of
    `runs` (host terms: `base`'s), then the per-iteration MAPE of every run; returns the fitted terms
    and one row per run (label, kind, iteration_mape_pct)."""
    base = get_profile("reference") if base is None else base
    layers = hwmodels.get_model(runs[0].settings["model"]).layers
    comps = []
    for r in runs:
        c = components(r, r.settings["model"], r.settings["gpu_catalog"], base)
        c["straggler_split"] = wave_tokens(r, base, mode)
        c["straggler_full"] = np.zeros_like(c["straggler_split"])
        comps.append(c)
    train = [i for i, r in enumerate(runs) if r.kind == "capacity"]
    cat = {k: np.concatenate([comps[i][k] for i in train]) for k in comps[0]}
    gpu_s = np.concatenate([runs[i].it["gpu_s"] for i in train])
    w = np.concatenate([np.full(len(runs[i].iter_s), 1.0 / np.sqrt(len(runs[i].iter_s))) for i in train])
    terms, _ = fit_gpu_terms(cat, gpu_s, w, layers)
    x = np.array(list(terms.values()))
    rows = []
    for r, c in zip(runs, comps):
        pred = gpu_model(x, c, layers) + base.overhead_s + base.per_seq_overhead_s * c["seqs"]
        rows.append({"label": r.label, "kind": r.kind,
                     "iteration_mape_pct": float(np.mean(np.abs(pred - r.iter_s) / r.iter_s) * 100)})
    return terms, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwmodels.validate waves", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES + ("both",), default="both")
    p.add_argument("--data", default=str(DATA_DIR), help="folder of run outputs (*.json.gz); the README's "
                   "figures are from hwmodels/validate/data/h200_scheduler_order/h200")
    a = p.parse_args(argv)
    from .fit import iteration_errors

    runs = load_runs(a.data)
    ref = {r.label + r.file: float(np.mean(np.abs(iteration_errors(r, "reference"))) * 100) for r in runs}
    for mode in (MODES if a.mode == "both" else (a.mode,)):
        terms, rows = evaluate(runs, mode)
        print(f"{mode}: fitted on the capacity runs: " + ", ".join(f"{k} {v:.4g}" for k, v in terms.items()
                                                                     if k != "decode_longest_s_per_token_layer"))
        for r, run in zip(rows, runs):
            print(f"  {r['label']:36s} iteration MAPE {r['iteration_mape_pct']:5.2f}%  "
                  f"(committed profile {ref[run.label + run.file]:5.2f}%)")
    return 0
