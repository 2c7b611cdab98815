"""Output lengths as a router could predict them, for the teacher's ``lengths="predicted"`` and
``"sampled"`` replays (``RoutingConfig.teacher_lengths``).

A router never sees a request's true output length, only the workload's noisy predicted bucket
(``Workload.pred_bucket``, ``envs.core.workload.noisy_buckets``: the true log2 bucket with
probability ``predictor_accuracy``, else a neighbour; the Routing observation's ``pred_bucket``
feature) and, for a request already decoding, the tokens it has generated so far. The best
estimate such a router can make of when a request ends is the conditional mean

    E[L | bucket b]                for a request that has generated nothing, and
    g + E[L - g | L > g, bucket b] for one that has generated g tokens,

taken over the calibration requests' (bucket, true length) pairs: a perfectly calibrated predictor
of that traffic (the best case for a router that sees only the bucket; a bucket's range midpoint
would add a calibration error on top, and the last bucket, > 2,048 tokens, has no midpoint).
The table keeps per bucket only the sorted lengths, so it depends on the true lengths only
through each bucket's distribution: permuting true lengths among the requests of one bucket
leaves every estimate unchanged (``tests/test_routing_teacher.py``). The pooled distribution
stands in for a bucket with no calibration request, or none longer than ``g`` (then 1 more token).
``sample_lengths`` draws from the same conditional distributions instead of taking their means (the
teacher then averages its outcomes over draws: an SLO miss is not linear in the length).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from envs.core import state as S
from envs.core.workload import N_BUCKETS


class LengthTable(NamedTuple):
    """Per bucket b (and b = N_BUCKETS: all buckets pooled) the sorted true output lengths
    ``lengths[b]`` (int64 [n_b], tokens) and their suffix sums ``suffix[b]`` (float64 [n_b + 1])."""

    lengths: tuple[np.ndarray, ...]
    suffix: tuple[np.ndarray, ...]
    fresh: np.ndarray  # int32 [N_BUCKETS]: expected_length of a request of bucket b with nothing generated


def length_table(wl: S.Workload) -> LengthTable:
    """The calibration table of ``wl``'s requests (every window's first ``n_requests``, failed ones
    left out). ``ValueError`` if no request is left or a predicted bucket is outside 0..7."""
    W, N = wl.output.shape
    real = (np.arange(N)[None, :] < wl.n_requests[:, None]) & ~wl.failed
    out = wl.output[real].astype(np.int64)
    b = wl.pred_bucket[real].astype(np.int64)
    if out.size == 0:
        raise ValueError("Routing teacher (predicted lengths): the workload has no request to calibrate on")
    if b.min() < 0 or b.max() >= N_BUCKETS:
        raise ValueError(f"Routing teacher (predicted lengths): pred_bucket must be in 0..{N_BUCKETS - 1}, "
                         f"got {int(b.min())}..{int(b.max())}")
    lengths, suffix = [], []
    for k in range(N_BUCKETS + 1):
        x = np.sort(out if k == N_BUCKETS else out[b == k])
        lengths.append(x)
        suffix.append(np.concatenate([np.cumsum(x[::-1])[::-1].astype(np.float64), [0.0]]))
    partial = LengthTable(tuple(lengths), tuple(suffix), np.zeros(N_BUCKETS, np.int32))
    fresh = expected_length(partial, np.arange(N_BUCKETS), np.zeros(N_BUCKETS, np.int64))
    return partial._replace(fresh=fresh)


def expected_length(table: LengthTable, bucket: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """The predicted total output length [n] (int32, tokens, > ``generated``) of requests with
    predicted ``bucket`` [n] that have generated ``generated`` [n] tokens: ``generated`` + the
    rounded E[L - g | L > g, bucket] (module docstring), at least 1 more token."""
    bucket = np.asarray(bucket, np.int64)
    g = np.asarray(generated, np.int64)
    res = np.empty(bucket.shape, np.int64)
    for i in range(bucket.size):
        rem = 0.0
        for k in (bucket.flat[i], N_BUCKETS):  # the bucket, else the pooled distribution
            x, suf = table.lengths[k], table.suffix[k]
            j = int(np.searchsorted(x, g.flat[i], side="right"))  # lengths > g start at j
            if j < x.size:
                rem = suf[j] / (x.size - j) - g.flat[i]
                break
        res.flat[i] = g.flat[i] + max(int(round(rem)), 1)
    return res.astype(np.int32)


def sample_lengths(table: LengthTable, bucket: np.ndarray, generated: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """One draw [n] (int32, tokens, > ``generated``) of the total output length of requests with
    predicted ``bucket`` [n] that have generated ``generated`` [n] tokens, from the calibration
    lengths of that bucket longer than ``generated`` (the pooled ones if none; then 1 more token)."""
    bucket = np.asarray(bucket, np.int64)
    g = np.asarray(generated, np.int64)
    res = g + 1
    todo = np.ones(bucket.shape, bool)
    for k in np.unique(bucket):
        for pool in (int(k), N_BUCKETS):  # the bucket, else the pooled distribution
            x = table.lengths[pool]
            at = np.flatnonzero((bucket == k) & todo)
            if at.size == 0:
                break
            j = np.searchsorted(x, g[at], side="right")  # lengths > g start at j
            ok = j < x.size
            pick = j[ok] + np.floor(rng.random(int(ok.sum())) * (x.size - j[ok])).astype(np.int64)
            res[at[ok]] = x[pick]
            todo[at[ok]] = False
    return np.maximum(res, g + 1).astype(np.int32)


def believed_window(table: LengthTable, wl: S.Workload, st: S.ClusterState, e: int,
                    rng: np.random.Generator | None = None) -> S.Workload:
    """Env ``e``'s window of ``wl`` as one window (row 0) whose ``output`` is what a router predicts
    (``expected_length``; with ``rng``, one draw of ``sample_lengths`` instead): every request from
    its bucket alone, the requests queued or running at env ``e``'s replicas from their bucket and
    the tokens they have generated. The other fields are views of ``wl``'s row; replays on it never
    read a true output length."""
    w = int(st.window[e])
    bucket = wl.pred_bucket[w].astype(np.int64)
    if rng is None:
        out = table.fresh[bucket]
    else:
        i = int(st.next_arrival[e])  # the pending request (later ones never arrive in a replay)
        out = table.fresh[bucket].copy()
        out[i:i + 1] = sample_lengths(table, bucket[i:i + 1], np.zeros(1, np.int64), rng)
    live = (st.status[e] == S.QUEUED) | (st.status[e] == S.RUNNING)
    if live.any():
        q = st.req[e][live]
        g = st.generated[e][live]
        out[q] = expected_length(table, bucket[q], g) if rng is None else sample_lengths(table, bucket[q], g, rng)
    return S.Workload(
        arrival_s=wl.arrival_s[w:w + 1], prompt=wl.prompt[w:w + 1], output=out[None, :],
        pred_bucket=wl.pred_bucket[w:w + 1], n_requests=wl.n_requests[w:w + 1],
        chain_ids=wl.chain_ids[w:w + 1], chain_len=wl.chain_len[w:w + 1], failed=wl.failed[w:w + 1])
