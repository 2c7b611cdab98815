"""mooncake_conv: multi-turn conversations sharing a system prompt, as 512-token hash chains.

Conversations start as a Poisson process. Every request spawns k follow-ups (k drawn from the
fitted distribution, mean < 1, so sessions end), each after a think time. A follow-up is
  continue - the previous prompt + previous answer + a new message (growth drawn from the file);
             it reuses every full block the two prompts share,
  retry    - the same prompt sent again (reuses the whole chain, partial last block included),
  branch   - an edited earlier turn: reuses only a drawn fraction of the parent's blocks.
Every request starts with the shared system-prompt block(s). New blocks get fresh ids, so equal
ids mean equal prefixes, exactly the semantics of Mooncake's hash_ids. Work is vectorized per
generation of the session tree (a few dozen Python iterations, none per request).
"""

from __future__ import annotations

import numpy as np

from traces.errors import TraceError
from traces.params import load_params
from traces.sampling import QuantileTable
from traces.synthetic import _positive, _seed, describe_call, make_arrivals
from traces.trace import Trace, TraceMeta, _gather_csr

__all__ = ["mooncake_conv"]


def _chains(par_ids: np.ndarray, par_off: np.ndarray, parent: np.ndarray, reuse: np.ndarray,
            n_blocks: np.ndarray, next_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Chain of child j = first reuse[j] ids of its parent's chain + fresh ids for the rest."""
    off = np.zeros(n_blocks.size + 1, dtype=np.int64)
    np.cumsum(n_blocks, out=off[1:])
    total = int(off[-1])
    pos = np.arange(total, dtype=np.int64) - np.repeat(off[:-1], n_blocks)
    child = np.repeat(np.arange(n_blocks.size), n_blocks)
    reused = pos < reuse[child]
    ids = np.empty(total, dtype=np.int64)
    ids[reused] = par_ids[par_off[parent[child[reused]]] + pos[reused]]
    n_fresh = total - int(reused.sum())
    ids[~reused] = next_id + np.arange(n_fresh, dtype=np.int64)
    return ids, off, next_id + n_fresh


def mooncake_conv(seed: int = 0, duration_s: float | None = None, rate_rps: float | None = None, *,
                  arrivals: str | None = None, cv: float | None = None, diurnal: bool = False,
                  peak_to_trough: float | None = None, peak_hour: float | None = None,
                  think_time_scale: float | None = None) -> Trace:
    """Kimi-like conversation traffic with prefix-block chains (see module docstring).

    `rate_rps` is the long-run request rate including follow-ups; a trace that starts empty,
    like the real one, has fewer follow-ups in its first minutes. `think_time_scale` multiplies
    every follow-up's think time (the fitted `gap_s` table; None: the fit itself, 1.0 gives the
    same trace): below 1, follow-ups come back while their prefix blocks are young, as an
    agent's tool calls do, with the same draws otherwise. Raises ``TraceError`` for a bad seed or
    a `think_time_scale` that is not a finite number > 0.
    """
    seed = _seed(seed)
    think_scale = _positive("think_time_scale", "mooncake_conv", think_time_scale, 1.0)  # x 1.0 is exact
    P = load_params("mooncake_conv")
    duration_s = P["duration_s"] if duration_s is None else duration_s
    rate_rps = P["rate_rps"] if rate_rps is None else rate_rps
    arrivals = P["arrivals"] if arrivals is None else arrivals
    bs, n_sys = int(P["block_size"]), int(P["system_prompt_blocks"])
    tab = {k: QuantileTable.from_params(P[k], f"mooncake_conv.{k}") for k in
           ("root_prompt", "output", "gap_s", "growth_tokens", "branch_reuse_frac", "branch_new_tokens")}
    kids_p = np.asarray(P["children_probs"], dtype=np.float64)
    mean_kids = float(np.arange(kids_p.size) @ kids_p)
    if not (abs(kids_p.sum() - 1) < 1e-6 and mean_kids < 1):
        raise TraceError(f"mooncake_conv.children_probs must sum to 1 with mean < 1, got mean {mean_kids}")
    min_prompt = n_sys * bs + 1
    if tab["root_prompt"].values[0] < min_prompt:
        raise TraceError(f"mooncake_conv.root_prompt must start above the system prompt ({min_prompt} tokens)")
    p_retry, p_branch = float(P["p_retry"]), float(P["p_branch"])

    rng = np.random.default_rng(seed)
    t = make_arrivals(rng, duration_s, rate_rps * (1.0 - mean_kids), arrivals, cv=cv, diurnal=diurnal,
                      peak_to_trough=peak_to_trough, peak_hour=peak_hour)
    p = tab["root_prompt"].sample_int(rng.random(t.size))
    o = tab["output"].sample_int(rng.random(t.size))
    nb = -(-p // bs)
    sys_ids = np.arange(n_sys, dtype=np.int64)
    ids, off, next_id = _chains(sys_ids, np.array([0, n_sys], dtype=np.int64), np.zeros(t.size, dtype=np.int64),
                                np.full(t.size, n_sys, dtype=np.int64), nb, n_sys)
    gens = [(t, p, o, ids, off)]
    while t.size:
        k = rng.choice(kids_p.size, size=t.size, p=kids_p)
        par = np.repeat(np.arange(t.size), k)
        m = par.size
        tc = t[par] + tab["gap_s"].ppf(rng.random(m)) * think_scale
        kind = rng.random(m)
        oc = tab["output"].sample_int(rng.random(m))
        pp, op, nbp = p[par], o[par], nb[par]
        growth = np.rint(tab["growth_tokens"].ppf(rng.random(m))).astype(np.int64)
        pc = pp + op + growth
        short = pc < min_prompt
        while short.any():  # a continued prompt cannot be shorter than the system prompt + 1 token
            redraw = np.rint(tab["growth_tokens"].ppf(rng.random(int(short.sum())))).astype(np.int64)
            pc[short] = pp[short] + op[short] + redraw
            short = pc < min_prompt
        reuse = np.minimum(pp // bs, pc // bs)
        retry = kind < p_retry
        branch = (kind >= p_retry) & (kind < p_retry + p_branch)
        frac = tab["branch_reuse_frac"].ppf(rng.random(m))
        new_tok = tab["branch_new_tokens"].sample_int(rng.random(m))
        rb = np.minimum(np.maximum(np.floor(frac * nbp).astype(np.int64), n_sys), pp // bs)
        pc = np.where(retry, pp, np.where(branch, rb * bs + new_tok, pc))
        reuse = np.where(retry, nbp, np.where(branch, rb, reuse))
        inside = tc < duration_s  # follow-ups after the end of the trace are outside the window
        par, tc, pc, oc, reuse = par[inside], tc[inside], pc[inside], oc[inside], reuse[inside]
        nbc = -(-pc // bs)
        ids, off, next_id = _chains(ids, off, par, reuse, nbc, next_id)
        t, p, o, nb = tc, pc, oc, nbc
        gens.append((t, p, o, ids, off))
    return _assemble(gens, seed, duration_s, rate_rps, arrivals, cv, diurnal, peak_to_trough, peak_hour, bs,
                     think_time_scale)


def _assemble(gens, seed, duration_s, rate_rps, arrivals, cv, diurnal, peak_to_trough, peak_hour, bs,
              think_time_scale) -> Trace:
    """Concatenate generations and sort by time (parents first on ties); ids stay 0..n_blocks-1."""
    t = np.concatenate([g[0] for g in gens])
    p = np.concatenate([g[1] for g in gens])
    o = np.concatenate([g[2] for g in gens])
    shift = np.cumsum([0] + [g[4][-1] for g in gens[:-1]])
    ids = np.concatenate([g[3] for g in gens])
    off = np.concatenate([[0]] + [g[4][1:] + s for g, s in zip(gens, shift)]).astype(np.int64)
    order = np.argsort(t, kind="stable")
    ids, off = _gather_csr(ids, off, order)
    meta = TraceMeta("mooncake_conv",
                     describe_call("mooncake_conv", seed, duration_s=duration_s, rate_rps=rate_rps, arrivals=arrivals,
                                   cv=cv, diurnal=diurnal or None, peak_to_trough=peak_to_trough, peak_hour=peak_hour,
                                   think_time_scale=think_time_scale),
                     "generated; parameters fitted to the Mooncake FAST'25 conversation trace (Apache-2.0)")
    return Trace(t[order], p[order], o[order], meta, block_ids=ids, block_offsets=off, block_size=bs)
