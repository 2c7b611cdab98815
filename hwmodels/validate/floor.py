"""The share of a run's per-iteration error that no step-time model of the recorded loads can remove.

The step-time model (hwmodels.steptime) sees an iteration through its loads: prefill tokens, causal
prefill pairs, decode sequences, KV tokens read, longest decode context, deepest prefill context, and
the CUDA graph the engine padded the batch to. Iterations of one run whose loads agree to within
SHAPE_BIN (relative) and that ran the same graph are the same iteration to that model, so it can only
give them one time. When the engine ran them at different times (the Mooncake load runs hold
16-sequence decode batches with the same graph, the same 28k longest context and KV totals 1% apart
at 20.7 and 27.0 ms, switching when a request leaves the batch: probably where the attention
kernel's thread blocks land on the SMs), the best single time per group still errs; the mean of that
best error over the run is its floor.

Per group the best time for the relative error |c - t| / t is the median of the times weighted by
1 / t (it minimises sum |c - t_i| / t_i). The floor is a lower bound only for models that are
constant within a bin (a model varying with the loads inside a 2% bin could do slightly better); it
says nothing about effects the loads do capture. Grouping uses fixed logarithmic bins (deterministic;
two near-identical iterations on either side of a bin edge are not grouped, so the floor errs low).
"""

from __future__ import annotations

import numpy as np

from .measured import Run

SHAPE_BIN = 0.02  # relative width of the load bins (one step-time model prediction per bin)
LOAD_KEYS = ("prefill_tokens", "prefill_attn_pairs", "decode_kv_tokens", "longest_decode_context",
             "longest_prefill_context")
GRAPH_KEYS = ("pad_decode", "pad_prefill", "graph")


def weighted_median(t: np.ndarray) -> float:
    """argmin_c sum_i |c - t_i| / t_i over the values t (> 0, shape [n]): the median weighted by 1 / t."""
    t = np.asarray(t, dtype=np.float64)
    if t.size == 0 or np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"weighted_median: need finite times > 0, got {t!r}")
    o = np.argsort(t, kind="stable")
    cw = np.cumsum(1.0 / t[o])
    return float(t[o][np.searchsorted(cw, 0.5 * cw[-1])])


def shape_groups(it: dict, rel_bin: float = SHAPE_BIN) -> np.ndarray:
    """Group id (int [iterations]) of every iteration: same CUDA graph (padded decodes, padded prefill
    tokens, graphed) and the same log(1 + load) / log(1 + rel_bin) bin for every load of LOAD_KEYS
    (decode_seqs is left out: within one graph it only moves the 2 us per-sequence host cost).
    Raises ValueError for rel_bin <= 0 or a missing record key."""
    if not rel_bin > 0:
        raise ValueError(f"shape_groups: rel_bin must be > 0, got {rel_bin!r}")
    missing = [k for k in LOAD_KEYS + GRAPH_KEYS if k not in it]
    if missing:
        raise ValueError(f"shape_groups: iteration records lack {missing}")
    step = np.log1p(rel_bin)
    cols = [np.asarray(it[k], dtype=np.float64) for k in GRAPH_KEYS]
    # longest_prefill_context is -1 (unknown) after a preemption: its own bin
    cols += [np.floor(np.log1p(np.maximum(np.asarray(it[k], dtype=np.float64), -0.5)) / step) for k in LOAD_KEYS]
    _, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    return inv.reshape(-1)


def iteration_floor(run: Run, rel_bin: float = SHAPE_BIN) -> np.ndarray:
    """Per iteration of `run` (shape [iterations]), the relative error |c - t| / t of the best single
    time c of its shape group (shape_groups): the floor's share of each iteration. Its mean, in %, is
    the run's iteration MAPE floor."""
    t = run.iter_s
    g = shape_groups(run.it, rel_bin)
    out = np.empty(len(t))
    order = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.diff(g[order])) + 1
    for idx in np.split(order, bounds):
        out[idx] = np.abs(weighted_median(t[idx]) - t[idx]) / t[idx]
    return out
