"""Summary statistics of a trace, including prefix-cache reuse under block-chain semantics."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from traces.errors import TraceError
from traces.trace import Trace

__all__ = ["trace_stats", "lru_block_hit_ratio", "first_use_mask"]


def first_use_mask(block_ids: np.ndarray) -> np.ndarray:
    """True at the first reference to each id (a miss for an infinite cache), False at re-uses."""
    mask = np.zeros(block_ids.shape[0], dtype=bool)
    if block_ids.size:
        _, first = np.unique(block_ids, return_index=True)
        mask[first] = True
    return mask


def trace_stats(trace: Trace) -> dict[str, float | int]:
    """n, duration, rate, length mean/quantiles, inter-arrival CV and (with blocks) cache reuse.

    With hash-chain ids equal ids already imply equal prefixes, so under an infinite cache a
    block reference hits iff that id was referenced before; token hits count each hit block's
    tokens (the last block of a prompt may be partial).
    """
    n = len(trace)
    out: dict[str, float | int] = {"n": n, "duration_s": trace.duration_s, "rate_rps": trace.rate_rps}
    for name, a in (("prompt", trace.prompt_tokens), ("output", trace.output_tokens)):
        if n:
            q = np.quantile(a, [0.5, 0.9, 0.99])
            out.update({f"{name}_mean": float(a.mean()), f"{name}_p50": float(q[0]), f"{name}_p90": float(q[1]),
                        f"{name}_p99": float(q[2])})
        else:
            out.update({f"{name}_{s}": float("nan") for s in ("mean", "p50", "p90", "p99")})
    gaps = np.diff(trace.arrival_s)
    out["interarrival_cv"] = float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else float("nan")
    if trace.failed is not None:
        out["failed"] = int(trace.failed.sum())
    if trace.block_ids is not None and trace.block_offsets is not None and trace.block_size is not None:
        ids, off, bs = trace.block_ids, trace.block_offsets, trace.block_size
        lengths = np.diff(off)
        pos = np.arange(ids.size, dtype=np.int64) - np.repeat(off[:-1], lengths)
        tokens = np.minimum(bs, np.repeat(trace.prompt_tokens, lengths) - pos * bs)
        hit = ~first_use_mask(ids)
        out.update({
            "block_refs": int(ids.size),
            "distinct_blocks": int(np.unique(ids).size),
            "infinite_cache_block_hit_ratio": float(hit.mean()) if ids.size else float("nan"),
            "infinite_cache_token_hit_ratio": float(tokens[hit].sum() / tokens.sum()) if ids.size else float("nan"),
        })
    return out


def lru_block_hit_ratio(trace: Trace, capacity_blocks: int) -> float:
    """Block hit ratio of a prefix cache of `capacity_blocks` blocks with LRU eviction.

    A request hits the longest prefix of its chain that is cached (a block is reusable only with
    its whole prefix); all its blocks then become most recently used, the head most recent of
    all, so that a chain's tail is evicted before its head. A reference simulation for plots, not a hot path.
    """
    if trace.block_ids is None or trace.block_offsets is None:
        raise TraceError(f"trace {trace.meta.name!r} has no block chains")
    if capacity_blocks < 1:
        raise TraceError(f"capacity_blocks must be >= 1, got {capacity_blocks}")
    cache: OrderedDict[int, None] = OrderedDict()
    hits = refs = 0
    ids, off = trace.block_ids.tolist(), trace.block_offsets.tolist()
    for i in range(len(trace)):
        chain = ids[off[i]:off[i + 1]]
        k = 0
        while k < len(chain) and chain[k] in cache:
            k += 1
        hits += k
        refs += len(chain)
        for b in reversed(chain):  # head ends most recent, so a chain's tail is evicted first
            cache[b] = None
            cache.move_to_end(b)
        while len(cache) > capacity_blocks:
            cache.popitem(last=False)
    return hits / refs if refs else float("nan")
