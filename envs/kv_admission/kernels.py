"""Numba kernels of KVAdmission-v0: one call steps or resets every env of the batch."""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic

from envs.core.lazy import G_LAZY, materialize, reset_lazy, run_iteration_lazy_inline
from envs.core.prefetch import prefetch
from envs.core.replica import (
    arrival_time,
    ceil_div,
    enqueue_inline,
    mark_missed,
    next_queued,
    reset_env_state,
    reset_replica,
    tpot_late,
)
from envs.core.state import (
    A_GAP_EMA,
    A_LAST_ITER_S,
    A_RECOMPUTE_EMA,
    A_TTFT_EMA,
    C_FINISHED,
    C_PREEMPTIONS,
    C_RECOMPUTED_TOKENS,
    C_SLO_MET,
    C_SLO_MISSED,
    N_HIST_BINS,
    RUNNING,
    SLO_TPOT,
)

# Observation version: which meaning GLOBAL_FEATURES / CANDIDATE_FEATURES have (the names alone do not say it).
# Checkpoints record it (agents.obs_version); one trained on another version is refused at load. Raise it, and
# describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: "request counts over max_seqs: queue_len log2(1 + queued) / 10, running and decoding / max_seqs",
    2: "request counts in capacity units (envs.core.capacity.count_unit, issue 21): queue_len "
       "log2(1 + queued / unit) / 4, running and decoding / unit",
}
OBS_VERSION = 2  # since 40831f1 (2026-12-02)
# Observation layout: GLOBAL_FEATURES, then CANDIDATE_FEATURES for each of the K queue heads.
# "unit" = envs.core.capacity.count_unit: the requests one replica serves in one TTFT SLO (its measured
# capacity on the episode's workload part x the TTFT SLO), as Routing-v0 counts requests: counts relative to
# the engine's capacity and the SLO (issue 21), not to max_seqs (1024 on every engine here, before).
GLOBAL_FEATURES = (
    "kv_free",  # free KV blocks / capacity
    "queue_len",  # log2(1 + queued / unit) / 4
    "running",  # running requests / unit
    "decoding",  # running requests past their prefill / unit
    "prefill_backlog",  # prefill tokens still to compute for running requests / KV capacity (tokens)
    "reserve_max",  # blocks running requests would hold at max_tokens / capacity (reservation)
    "pf_peak",  # Past-Future predicted peak KV of running requests / capacity
    "ttft_recent",  # recent TTFT / TTFT SLO
    "gap_recent",  # recent largest gap between tokens / TBT SLO
    "last_iter",  # last iteration time / TBT SLO
    "head_wait",  # waiting time of the oldest queued request / TTFT SLO
    "recompute_recent",  # recently preempted KV tokens / KV capacity (tokens)
    "arrived",  # share of the episode's requests that have arrived
    "queue_late",  # share of queued requests already past their TTFT SLO
    "queue_tokens",  # queued prompt tokens / KV capacity (tokens)
    "mean_output",  # Past-Future's expected output length / max_tokens
)
CANDIDATE_FEATURES = (
    "present",  # 1 if the queue has a k-th request
    "prompt",  # tokens to prefill / KV capacity (tokens)
    "pred_bucket",  # predicted output-length bucket / (buckets - 1)
    "wait",  # waiting time / TTFT SLO
    "preempted",  # 1 if it was preempted (its TTFT is behind it)
    "reserve_after",  # reserve_max if the first k+1 candidates were admitted
    "pf_after",  # pf_peak if the first k+1 candidates were admitted
    "fits_now",  # 1 if the first k+1 candidates' KV fits in free blocks now
)


_STAMP_MAX = np.iinfo(np.int32).max


class ObsScratch(NamedTuple):
    """Working memory of :func:`fill_obs`, one row per observed replica (``row``), kept between
    calls so that building an observation allocates nothing and sorts almost nothing.

    ``order[row, :n_order[row]]``: the running slots of the last call, ascending by Past-Future's
    remaining output (the next call starts from this order, so its insertion sort only moves the
    few requests whose rank changed); ``mark``/``stamp``: which slots a call has placed; ``rem``,
    ``length``: the sorted inputs of the peak; ``suf``: the suffix tables of the output-length
    history and Past-Future's conditional mean per bin; ``heads``/``head_seq``: the K FCFS queue
    heads; ``peak``: the K + 1 peaks. Sized by what a replica can hold (``max_running`` running
    requests, ``slots`` request slots), not by the trace.
    """

    order: np.ndarray  # int32 [rows, M], M = running requests a replica can hold
    n_order: np.ndarray  # int32 [rows]
    mark: np.ndarray  # int32 [rows, S], the stamp of the last call that placed the slot
    stamp: np.ndarray  # int64 [rows]
    rem: np.ndarray  # float64 [rows, M]
    length: np.ndarray  # float64 [rows, M]
    suf: np.ndarray  # float64 [rows, 3, N_HIST_BINS + 1]: suffix counts, suffix sums, E[L | bin >= b]
    rem_top: np.ndarray  # float64 [rows, N_HIST_BINS + 1]: the estimate per bin capped at max_tokens (_rem_table)
    heads: np.ndarray  # int64 [rows, K]
    head_seq: np.ndarray  # int64 [rows, K]
    peak: np.ndarray  # float64 [rows, K + 1]
    extra_len: np.ndarray  # float64 [rows, K]
    # pos_*: int32 (token counts, offset by an iteration count, which the lazy set's int32 sched already
    # bounds), half the bytes of int64: every step reads and sorts them for each running request.
    pos_g: np.ndarray  # int32 [rows, M], by position in order: generated - it (it: the lazy set's iterations)
    pos_l: np.ndarray  # int32 [rows, M], by position in order: prompt + pos_g
    pos_b: np.ndarray  # int32 [rows, M], by position in order: target - (kv_tokens - it)
    pos_ok: np.ndarray  # int8 [rows], 1: the last call saw every running request lazy, pos_* hold them
    unit: np.ndarray  # float64 [rows], the observation's unit of request counts (count_unit), set at reset (NaN before)


def obs_scratch(rows: int, max_running: int, slots: int, K: int) -> ObsScratch:
    """:class:`ObsScratch` for ``rows`` replicas of up to ``max_running`` running requests in
    ``slots`` request slots with ``K`` candidates; raises ``ValueError`` for a size < 1."""
    if min(rows, max_running, slots, K) < 1:
        raise ValueError(f"obs_scratch: rows, max_running, slots, K must be >= 1, got {rows}, {max_running}, "
                         f"{slots}, {K}")
    M = min(max_running, slots)
    return ObsScratch(
        order=np.zeros((rows, M), np.int32), n_order=np.zeros(rows, np.int32),
        mark=np.zeros((rows, slots), np.int32), stamp=np.zeros(rows, np.int64),
        rem=np.zeros((rows, M)), length=np.zeros((rows, M)), suf=np.zeros((rows, 3, N_HIST_BINS + 1)),
        rem_top=np.zeros((rows, N_HIST_BINS + 1)),
        heads=np.zeros((rows, K), np.int64), head_seq=np.zeros((rows, K), np.int64),
        peak=np.zeros((rows, K + 1)), extra_len=np.zeros((rows, K)),
        pos_g=np.zeros((rows, M), np.int32), pos_l=np.zeros((rows, M), np.int32),
        pos_b=np.zeros((rows, M), np.int32), pos_ok=np.zeros(rows, np.int8),
        unit=np.full(rows, np.nan),  # NaN until a reset sets it: a missing unit shows in the observation
    )


@nb.njit(cache=True, inline="always")
def _hist_tables(hist, suf_c, suf_s, cond):
    """Suffix counts and sums of the output-length history (log2 bins, bin b ~ 1.5 * 2**b), and
    ``cond[b]`` = E[L | L in bin >= b] (NaN where no history is that long)."""
    suf_c[N_HIST_BINS] = 0.0
    suf_s[N_HIST_BINS] = 0.0
    for b in range(N_HIST_BINS - 1, -1, -1):
        mid = 1.0 if b == 0 else 1.5 * (1 << b)
        suf_c[b] = suf_c[b + 1] + hist[b]
        suf_s[b] = suf_s[b + 1] + hist[b] * mid
        cond[b] = suf_s[b] / suf_c[b] if suf_c[b] > 0 else np.nan


@intrinsic
def _bit_length(typingctx, x):
    """Bits of a non-negative int64 (0 for 0): 64 minus LLVM's count of leading zeros."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.int64)
        lz = builder.ctlz(v, ir.Constant(ir.IntType(1), 0))
        return builder.sub(ir.Constant(ir.IntType(64), 64), lz)

    return types.int64(x), codegen


@nb.njit(cache=True, inline="always")
def _output_bin(g):
    """The first bin b (log2 bins: bin 0 from 1.0, bin b >= 1 from 1.5 * 2**b, at most N_HIST_BINS)
    whose lower edge exceeds the integer ``g`` >= 0: the count of edges <= g, which for g >= 1 is 1 +
    the bit length of g // 3 (1.5 * 2**b <= g iff 2**(b - 1) <= g // 3). The same b as the loop
    ``while b < N_HIST_BINS and 1.5 * 2**b <= g`` (tests/test_kernel_parity.py checks every g)."""
    if g < 1:
        return 0
    return min(1 + _bit_length(g // 3), N_HIST_BINS)


@nb.njit(cache=True, inline="always")
def _rem_table(cond, max_out, top):
    """``top[b]`` (b <= N_HIST_BINS) for :func:`_remaining`: Past-Future's estimate E[L | L > g] of a
    request in bin b (``cond[b]`` from :func:`_hist_tables`) capped at ``max_out``; -inf where the
    history has no output that long (bin N_HIST_BINS, or ``cond[b]`` NaN: the estimate is then g + 1)."""
    for b in range(N_HIST_BINS):
        top[b] = -np.inf if np.isnan(cond[b]) else min(cond[b], max_out)
    top[N_HIST_BINS] = -np.inf


@nb.njit(cache=True, inline="always")
def _remaining(top, g):
    """Past-Future's remaining output of a request with ``g`` >= 0 tokens generated:
    max(min(E[L | L > g], max_out) - g, 1.0), ``top`` from :func:`_rem_table`. Where the estimate is
    g + 1 that is 1.0 either way (min(g + 1, max_out) - g <= 1 for g < 2**53), as -inf - g gives;
    elsewhere the same expression. One table load, no branch."""
    return max(top[_output_bin(g)] - g, 1.0)


@nb.njit(cache=True, inline="always")
def _ceil_blocks(a, bs, shift):
    """ceil(a / bs) blocks for a >= 0: a shift where ``bs`` is 2**shift (``shift`` >= 0; -1: divide)."""
    if shift >= 0:
        return (a + (bs - 1)) >> shift
    return ceil_div(a, bs)


@nb.njit(cache=True, inline="always")
def _pow2_shift(bs):
    """k where bs == 2**k (bs >= 1), else -1."""
    if bs < 1 or bs & (bs - 1) != 0:
        return -1
    return _bit_length(bs) - 1


@nb.njit(cache=True, inline="always")
def _lane(suf_len, suf_cnt, el, c, r, p):
    """One configuration's running maximum: max(p, (suf_len + el) + (suf_cnt + c) * r) as a select."""
    v = (suf_len + el) + (suf_cnt + c) * r
    return v if v > p else p


_PEAK_LANES = 8  # configurations per pass of _peaks (K <= 8, the default, is one pass)


@nb.njit(cache=True, inline="always")
def _peaks(lens, rems, n, extra_rem, extra_len, n_extra, peak):
    """Past-Future's peak future KV tokens (Past-Future: each running request i grows by rems[i]
    tokens, then leaves) of the running batch (``peak[0]``) and of the batch plus the first k + 1
    queued candidates (``peak[k + 1]``, k < ``n_extra``: ``extra_len[k]`` more tokens in k + 1
    requests that each have ``extra_rem`` left), over ``lens``/``rems`` sorted by ascending
    remaining length: one pass for the batch and the candidates' insertion point, then one pass
    per 8 configurations below that point with their maxima in registers.

    Each value is the same floating-point expression a pass per configuration evaluates: suffix
    sums of lengths and counts are exact integers in float64 (so the second pass's sums, restarted
    at the insertion point, are the first pass's, and adding a configuration's extras to the
    batch's sums is the same number either way), and the maximum of positive values does not
    depend on the order it is taken in nor on the order of requests with equal remaining length
    (within such a group the last position holds the largest sum)."""
    best = 0.0  # positions above the candidates' insertion point: the same for every configuration
    suf_len = 0.0
    suf_cnt = 0.0
    ins = -1  # the candidates go above position ins (the first, descending, with r < extra_rem)
    ins_len = 0.0
    ins_cnt = 0.0
    for j in range(n - 1, -1, -1):
        r = rems[j]
        if ins < 0 and r < extra_rem:
            ins = j
            ins_len = suf_len
            ins_cnt = suf_cnt
        suf_len += lens[j]
        suf_cnt += 1.0
        v = suf_len + suf_cnt * r
        best = max(best, v)
    if ins < 0:
        ins_len = suf_len
        ins_cnt = suf_cnt
    peak[0] = best
    for k0 in range(0, n_extra, _PEAK_LANES):
        # Lanes past n_extra compute with no extra length and are not stored.
        e0 = extra_len[k0]
        e1 = extra_len[k0 + 1] if k0 + 1 < n_extra else 0.0
        e2 = extra_len[k0 + 2] if k0 + 2 < n_extra else 0.0
        e3 = extra_len[k0 + 3] if k0 + 3 < n_extra else 0.0
        e4 = extra_len[k0 + 4] if k0 + 4 < n_extra else 0.0
        e5 = extra_len[k0 + 5] if k0 + 5 < n_extra else 0.0
        e6 = extra_len[k0 + 6] if k0 + 6 < n_extra else 0.0
        e7 = extra_len[k0 + 7] if k0 + 7 < n_extra else 0.0
        c0 = k0 + 1.0
        c1 = k0 + 2.0
        c2 = k0 + 3.0
        c3 = k0 + 4.0
        c4 = k0 + 5.0
        c5 = k0 + 6.0
        c6 = k0 + 7.0
        c7 = k0 + 8.0
        # The candidates' own term at the insertion point (each configuration starts from 0.0).
        p0 = _lane(ins_len, ins_cnt, e0, c0, extra_rem, 0.0)
        p1 = _lane(ins_len, ins_cnt, e1, c1, extra_rem, 0.0)
        p2 = _lane(ins_len, ins_cnt, e2, c2, extra_rem, 0.0)
        p3 = _lane(ins_len, ins_cnt, e3, c3, extra_rem, 0.0)
        p4 = _lane(ins_len, ins_cnt, e4, c4, extra_rem, 0.0)
        p5 = _lane(ins_len, ins_cnt, e5, c5, extra_rem, 0.0)
        p6 = _lane(ins_len, ins_cnt, e6, c6, extra_rem, 0.0)
        p7 = _lane(ins_len, ins_cnt, e7, c7, extra_rem, 0.0)
        sl = ins_len
        sc = ins_cnt
        for j in range(ins, -1, -1):
            r = rems[j]
            sl += lens[j]
            sc += 1.0
            p0 = _lane(sl, sc, e0, c0, r, p0)
            p1 = _lane(sl, sc, e1, c1, r, p1)
            p2 = _lane(sl, sc, e2, c2, r, p2)
            p3 = _lane(sl, sc, e3, c3, r, p3)
            p4 = _lane(sl, sc, e4, c4, r, p4)
            p5 = _lane(sl, sc, e5, c5, r, p5)
            p6 = _lane(sl, sc, e6, c6, r, p6)
            p7 = _lane(sl, sc, e7, c7, r, p7)
        lanes = (p0, p1, p2, p3, p4, p5, p6, p7)
        for i in range(min(_PEAK_LANES, n_extra - k0)):  # the lanes of real configurations (k0 < n_extra)
            peak[k0 + 1 + i] = max(lanes[i], best)


@nb.njit(cache=True, inline="always")
def _move(rems, order, pos_g, pos_l, pos_b, src, dst):
    """Position ``src``'s entry of every array of the running order copied to position ``dst``."""
    rems[dst] = rems[src]
    order[dst] = order[src]
    pos_g[dst] = pos_g[src]
    pos_l[dst] = pos_l[src]
    pos_b[dst] = pos_b[src]


@nb.njit(cache=True, inline="always")
def _sort_by_rem(rems, order, pos_g, pos_l, pos_b, n):
    """The first ``n`` positions stably sorted by ``rems`` (ascending), the other arrays alongside.

    An insertion sort (the positions hold the last call's order, so nearly sorted), with one
    addition for the common disorder: a request whose estimate jumped up (its output crossed a
    length bin) stands before many smaller ones. Where only the entry before ``i`` is greater
    than ``rems[i]``, that entry is carried forward past every following entry strictly smaller
    than it in one move, instead of each of them stepping back past it (a step of the loop each,
    most of the sort's time at E = 256). An entry carried only past strictly smaller keys has no
    tie with them, so the stable order, and every position, is the insertion sort's. The lengths
    are not carried: they follow from ``pos_l`` after it (:func:`fill_obs`), a sixth less to move."""
    i = 1
    while i < n:
        x = rems[i]
        if rems[i - 1] <= x:
            i += 1
            continue
        if i == 1 or rems[i - 2] <= x:
            y = rems[i - 1]
            j = i + 1
            while j < n and rems[j] < y:
                j += 1
            s, pg, pl, pb = order[i - 1], pos_g[i - 1], pos_l[i - 1], pos_b[i - 1]
            for k in range(i, j):
                _move(rems, order, pos_g, pos_l, pos_b, k, k - 1)
            rems[j - 1], order[j - 1] = y, s
            pos_g[j - 1], pos_l[j - 1], pos_b[j - 1] = pg, pl, pb
            continue  # position i - 1 now holds x, in place; i holds the next entry to place
        s, pg, pl, pb = order[i], pos_g[i], pos_l[i], pos_b[i]
        j = i
        while j > 0 and rems[j - 1] > x:
            _move(rems, order, pos_g, pos_l, pos_b, j - 1, j)
            j -= 1
        rems[j], order[j] = x, s
        pos_g[j], pos_l[j], pos_b[j] = pg, pl, pb
        i += 1


@nb.njit(cache=True)
def fill_obs(st, wl, eng, e, K, obs, mask, admit_levels, sc, row, r=0, lz=None, mark_late=False, same_running=False,
             entered=-1):
    """Observation and mask of replica ``r`` of env ``e`` into ``obs[e]``/``mask[e]``, with
    ``sc`` (:class:`ObsScratch`) row ``row`` as working memory (KVAdmission-v0: row e; one
    replica per env). No allocation, one Past-Future pass, and the running requests sorted by
    an insertion sort that starts from the row's previous order. ``lz``: the batch's
    :class:`envs.core.lazy.LazyDecode` when its lazy requests are not written back (replica 0;
    a lazy request, ``blocks < 0``, has ``it - a`` more tokens than its fields say), None for a
    plain state. ``mark_late``: also what ``envs.core.replica.mark_late_queued`` does at the env's
    clock, in the same pass over the queue (step_all: one scan of the slots instead of two).
    ``same_running``: the replica runs the same requests as at the row's last call (none admitted,
    finished or preempted since), so the last order holds every running slot: it is kept as it
    is. ``entered`` >= 0: the requests admitted since the row's last call (-1: not known); the
    running list ends with those still running, after the last order's, so they are taken from its
    tail without marks (the marks, ``sc.mark``, are then left as they were: only the pass with
    marks, for a call that does not know, reads or writes them).

    When every running request is lazy now and every request of the last order was at the row's
    last call, each of those still running has had one token per iteration since (one that missed
    one would not be lazy now), so its tokens, KV and prompt come from the row's per-position
    constants (``pos_*``, kept in the order's positions) and the lazy set's iteration count, not
    from its slot: the same integers, so the same observation, without a load of its fields. Only
    requests admitted since are read from their slots."""
    w = st.window[e]
    bs = eng.block_size
    cap = float(eng.capacity_blocks)
    cap_tok = cap * bs
    now = st.clock[e]
    N = wl.n_requests[w]
    arrival = wl.arrival_s[w]
    scale = st.time_scale[e]
    prompt_w = wl.prompt[w]
    status = st.status
    suf_c = sc.suf[row, 0]
    suf_s = sc.suf[row, 1]
    cond_tab = sc.suf[row, 2]
    _hist_tables(st.out_hist[e], suf_c, suf_s, cond_tab)
    rem_top = sc.rem_top[row]
    _rem_table(cond_tab, eng.max_output, rem_top)

    # Running requests: last call's order (those still running), then the newly admitted.
    n_run = st.n_running[e, r]
    order = sc.order[row]
    mark = sc.mark[row]
    pos_g = sc.pos_g[row]
    pos_l = sc.pos_l[row]
    pos_b = sc.pos_b[row]
    stamp = sc.stamp[row] + 1
    if stamp > _STAMP_MAX:  # int32 marks: start over rather than wrap onto an old stamp
        mark[:] = 0
        stamp = 1
    sc.stamp[row] = stamp
    m = 0
    m_old = -1  # positions that hold requests of the last order, once known
    if same_running and sc.n_order[row] == n_run:
        m = m_old = n_run
    elif entered >= 0:
        # The running list holds the last order's requests still running (in admission order),
        # then the ones admitted since: the last n_run - m_old entries. A slot of the last order
        # that is running holds the same request (a slot freed in a step takes a new request only
        # as queued, admitted in a later step).
        for i in range(sc.n_order[row]):
            s = order[i]
            if status[e, r, s] == RUNNING:
                order[m] = s
                pos_g[m] = pos_g[i]
                pos_l[m] = pos_l[i]
                pos_b[m] = pos_b[i]
                m += 1
        sc.n_order[row] = m
        if n_run - m <= entered:
            m_old = m
            run_list = st.run_list[e, r]
            for i in range(m, n_run):
                order[i] = run_list[i]
            m = n_run
    if m_old < 0:  # the last order's running slots, then every other running slot, each once (marks)
        m = 0
        for i in range(sc.n_order[row]):
            s = order[i]
            if status[e, r, s] == RUNNING and mark[s] != stamp:
                mark[s] = stamp
                order[m] = s
                pos_g[m] = pos_g[i]
                pos_l[m] = pos_l[i]
                pos_b[m] = pos_b[i]
                m += 1
        m_old = m
        run_list = st.run_list[e, r]
        for i in range(n_run):
            s = run_list[i]
            if mark[s] != stamp:
                mark[s] = stamp
                order[m] = s
                m += 1
    sc.n_order[row] = m

    # Reservation, backlog, decoding and Past-Future's inputs (integer sums: exact in any order),
    # then an insertion sort by remaining output (stable; the order is nearly sorted already).
    lens = sc.length[row]
    rems = sc.rem[row]
    req = st.req[e, r]
    generated = st.generated[e, r]
    target = st.target[e, r]
    max_out = eng.max_output
    shift = _pow2_shift(bs)
    it_e = 0  # iterations the env's lazy set has run (read out of lz once, not per request)
    i0 = 0  # positions below i0 from the constants, the rest from their slots
    if lz is not None:
        it_e = lz.it[e]
        if sc.pos_ok[row] == 1 and lz.agg[e, G_LAZY] == n_run:
            i0 = m_old
    reserve = 0
    backlog = 0
    for i in range(i0):
        g = pos_g[i] + it_e
        reserve += _ceil_blocks(pos_l[i] - pos_g[i] + max_out, bs, shift)
        backlog += pos_b[i]
        rems[i] = _remaining(rem_top, g)
    backlog -= i0 * it_e
    decoding = i0  # every request was decoding at the last call (pos_ok)
    kv_tokens = st.kv_tokens[e, r]
    blocks = st.blocks[e, r]
    for i in range(i0, n_run):
        s = order[i]
        prompt = prompt_w[req[s]]
        g = generated[s]
        reserve += _ceil_blocks(prompt + max_out, bs, shift)
        kv = kv_tokens[s]
        if lz is not None:
            blk = blocks[s]
            if blk < 0:  # lazy since iteration -(blk + 1) (envs.core.lazy)
                g += it_e + blk + 1
                kv += it_e + blk + 1
        tgt = target[s]
        backlog += tgt - kv
        if kv >= tgt:
            decoding += 1
        rems[i] = _remaining(rem_top, g)
        pos_g[i] = g - it_e
        pos_l[i] = prompt + g - it_e
        pos_b[i] = tgt - kv + it_e
    sc.pos_ok[row] = 0
    if lz is not None:
        if lz.agg[e, G_LAZY] == n_run and decoding == n_run:
            sc.pos_ok[row] = 1
    _sort_by_rem(rems, order, pos_g, pos_l, pos_b, n_run)
    for i in range(n_run):  # prompt + generated tokens, in the sorted order
        lens[i] = pos_l[i] + it_e
    mean_out = suf_s[0] / suf_c[0] if suf_c[0] > 0 else 0.0

    # The K oldest queued requests (FCFS heads) and queue-wide sums, in one pass.
    heads = sc.heads[row]
    head_seq = sc.head_seq[row]
    for k in range(K):
        heads[k] = -1
        head_seq[k] = np.iinfo(np.int64).max
    q_tokens = 0
    late = 0
    n_q = st.n_queued[e, r]
    seq = st.seq[e, r]
    missed = st.missed
    s = -1
    for _ in range(n_q):
        s = next_queued(status, e, r, s + 1)
        q_tokens += target[s]
        if generated[s] == 0:
            if now - arrival[req[s]] * scale > eng.slo_ttft:
                late += 1
                if mark_late:
                    mark_missed(missed, st.counters, e, r, s)
        elif mark_late and eng.slo_metric == SLO_TPOT and not missed[e, r, s]:  # preempted after its first token
            q = req[s]
            if tpot_late(now, arrival[q] * scale + st.ttft[e, q], wl.output[w, q], eng.slo_tpot):
                mark_missed(missed, st.counters, e, r, s)
        sq = seq[s]
        if sq < head_seq[K - 1]:
            k = K - 1
            while k > 0 and head_seq[k - 1] > sq:
                head_seq[k] = head_seq[k - 1]
                heads[k] = heads[k - 1]
                k -= 1
            head_seq[k] = sq
            heads[k] = s

    # The candidates' cumulative lengths, then every configuration's Past-Future peak at once.
    extra_len = sc.extra_len[row]
    n_heads = 0
    cum_len = 0
    for k in range(K):
        if heads[k] < 0:
            break
        cum_len += target[heads[k]]
        extra_len[k] = cum_len
        n_heads += 1
    peak = sc.peak[row]
    _peaks(lens, rems, n_run, mean_out, extra_len, n_heads, peak)

    o = obs[e]
    o[0] = st.free_blocks[e, r] / cap
    unit = sc.unit[row]
    o[1] = np.log2(1.0 + n_q / unit) / 4.0
    o[2] = n_run / unit
    o[3] = decoding / unit
    o[4] = float(backlog) / cap_tok
    o[5] = float(reserve) / cap
    o[6] = peak[0] / cap_tok
    o[7] = st.accum[e, A_TTFT_EMA] / eng.slo_ttft
    o[8] = st.accum[e, A_GAP_EMA] / eng.slo_tpot
    o[9] = st.accum[e, A_LAST_ITER_S] / eng.slo_tpot
    o[10] = 0.0
    if heads[0] >= 0:
        o[10] = (now - arrival[req[heads[0]]] * scale) / eng.slo_ttft
    o[11] = st.accum[e, A_RECOMPUTE_EMA] / cap_tok
    o[12] = st.next_arrival[e] / N
    o[13] = late / n_q if n_q > 0 else 0.0
    o[14] = float(q_tokens) / cap_tok
    o[15] = mean_out / eng.max_output

    G = 16
    F = 8
    cum_res = reserve
    cum_blocks = 0
    free = st.free_blocks[e, r]
    pred_bucket = wl.pred_bucket[w]
    for k in range(K):
        base = G + k * F
        s = heads[k]
        if s < 0:
            for f in range(F):
                o[base + f] = 0.0
            continue
        q = req[s]
        tgt = target[s]
        cum_res += _ceil_blocks(prompt_w[q] + eng.max_output, bs, shift)
        cum_blocks += _ceil_blocks(tgt, bs, shift)
        o[base + 0] = 1.0
        o[base + 1] = tgt / cap_tok
        o[base + 2] = pred_bucket[q] / 7.0
        o[base + 3] = (now - arrival[q] * scale) / eng.slo_ttft
        o[base + 4] = 1.0 if generated[s] > 0 else 0.0
        o[base + 5] = float(cum_res) / cap
        o[base + 6] = peak[k + 1] / cap_tok
        o[base + 7] = 1.0 if cum_blocks <= free else 0.0

    # Action mask: admit levels beyond what can be admitted are masked (0 stays legal unless
    # nothing runs and requests wait, which would only let time pass).
    can_admit = min(n_q, eng.max_seqs - n_run)
    n_admit = admit_levels.shape[0]
    per_admit = mask.shape[1] // n_admit
    for a in range(n_admit):
        lvl = admit_levels[a]
        ok = True
        if a > 0 and admit_levels[a - 1] >= can_admit:
            ok = False  # a smaller level already admits everything admissible
        if lvl == 0 and n_run == 0 and n_q > 0:
            ok = False
        if lvl > 0 and can_admit == 0:
            ok = False
        for j in range(per_admit):
            mask[e, a * per_admit + j] = ok


# fill_obs compiled for inlining into step_all's loop over envs: a compiled call taking the state
# tuples pays an atomic reference-count update per member array (about 70 of them), which was a
# fifth of a step's time (perf, E = 256).
fill_obs_inline = nb.njit(inline="always")(fill_obs.py_func)


@nb.njit(cache=True)
def write_obs(st, wl, eng, e, K, obs, mask, admit_levels, n_budgets, unit, r=0):
    """Observation and mask of replica ``r`` of env ``e`` (KVAdmission-v0 has one replica; the
    multi-agent cluster's admission controllers and ``examples/engine_hook.py`` use this same
    layout for each of theirs): :func:`fill_obs` with fresh working memory (one call's worth of
    allocation; a batch that builds observations every step keeps an :class:`ObsScratch`).
    ``unit``: the observation's unit of request counts (``envs.core.capacity.count_unit`` of the
    replica's capacity in requests/s and the TTFT SLO), > 0."""
    sc = _fresh_scratch(st.status.shape[2], eng.max_seqs, K)
    sc.unit[0] = unit
    fill_obs(st, wl, eng, e, K, obs, mask, admit_levels, sc, 0, r)


@nb.njit(cache=True)
def _fresh_scratch(slots, max_running, K):
    M = min(max_running, slots)
    return ObsScratch(
        np.zeros((1, M), np.int32), np.zeros(1, np.int32), np.zeros((1, slots), np.int32), np.zeros(1, np.int64),
        np.zeros((1, M)), np.zeros((1, M)), np.zeros((1, 3, N_HIST_BINS + 1)), np.zeros((1, N_HIST_BINS + 1)),
        np.zeros((1, K), np.int64), np.zeros((1, K), np.int64), np.zeros((1, K + 1)), np.zeros((1, K)),
        np.zeros((1, M), np.int32), np.zeros((1, M), np.int32), np.zeros((1, M), np.int32),
        np.zeros(1, np.int8), np.full(1, np.nan),
    )


@nb.njit(cache=True, inline="always")
def _enqueue_arrivals(st, wl, eng, e, until):
    """Env ``e``'s requests that arrive by ``until`` into its queue. Inlined: step_all calls it every
    step, and a compiled call taking the state tuples pays an atomic reference-count update per
    member array (perf, E = 256: NRT_incref/decref were 18% of samples); so is ``enqueue``."""
    w = st.window[e]
    N = wl.n_requests[w]
    arrival = wl.arrival_s[w]
    scale = st.time_scale[e]
    while st.next_arrival[e] < N and arrival[st.next_arrival[e]] * scale <= until:
        enqueue_inline(st, wl, eng, e, 0, st.next_arrival[e])
        st.next_arrival[e] += 1


@nb.njit(cache=True, inline="always")
def _pf2(arr, e, k):
    """Prefetch hint of ``arr[e, k]``, ``k`` clamped to the row (every address stays in the array)."""
    prefetch(arr, (e, min(k, arr.shape[1] - 1)))


@nb.njit(cache=True, inline="always")
def _pf3(arr, e, j, k):
    """Prefetch hint of ``arr[e, j, k]``, ``k`` clamped to the row."""
    prefetch(arr, (e, j, min(k, arr.shape[2] - 1)))


@nb.njit(cache=True, inline="always")
def _prefetch_env(st, lz, sc, obs, mask, e):
    """Cache hints for the rows env ``e`` reads first in :func:`step_all` (``envs.core.prefetch``):
    its per-env rows, the first lines of its running list, slot states and running order, and its
    observation; and the lazy set's ``end`` and the slot states over the slots likely in use (1.5x
    the requests held, slots filling from the lowest: the running list's loops read them by slot, in
    no order a hardware prefetcher follows). Called one env ahead; changes no value."""
    for k in (0, 8, 16):
        _pf2(st.counters, e, k)
        _pf3(sc.suf, e, 0, k)
        _pf3(sc.suf, e, 1, k)
        _pf3(sc.suf, e, 2, k)
    _pf2(st.accum, e, 0)
    _pf2(st.out_hist, e, 0)
    _pf2(st.out_hist, e, 8)
    _pf3(st.gap_heap, e, 0, 0)  # the count of entries and the root: one 32-byte pair
    _pf2(lz.agg, e, 0)
    _pf2(lz.phase, e, 0)
    _pf2(lz.phase, e, lz.phase.shape[1] - 1)
    _pf2(lz.glog, e, (lz.it[e] + 1) & (lz.glog.shape[1] - 1))
    for k in (0, 16):
        _pf3(st.run_list, e, 0, k)
        _pf2(sc.order, e, k)
        _pf2(sc.pos_g, e, k)
        _pf2(sc.pos_l, e, k)
        _pf2(sc.pos_b, e, k)
    for k in (0, 8):
        _pf2(sc.rem, e, k)
        _pf2(sc.length, e, k)
    used = st.n_running[e, 0] + st.n_queued[e, 0]
    hi = min(used + used // 2 + 1, st.status.shape[2])
    for k in range(0, hi, 16):  # int32: 16 a cache line
        _pf2(lz.end, e, k)
    for k in range(0, max(hi, 256), 64):
        _pf3(st.status, e, 0, k)
    _pf2(sc.rem_top, e, 0)
    _pf2(sc.rem_top, e, N_HIST_BINS)
    _pf2(sc.heads, e, 0)
    _pf2(sc.head_seq, e, 0)
    _pf2(sc.peak, e, 0)
    _pf2(sc.extra_len, e, 0)
    for k in range(0, obs.shape[1], 16):
        _pf2(obs, e, k)
    _pf2(mask, e, 0)
    _pf2(mask, e, mask.shape[1] - 1)


# step_all and step_repeat are compiled without numba's reference counting (``_nrt=False``, numba's
# CPU target option ``nrt``, as envs/prefix_eviction/kernels.py): they index arrays their caller
# owns and allocate none (numba compiles the helpers they call with the same option, so anything in
# the call tree that allocated or returned a new array would fail to compile, not leak or run
# unsafely; numba's allocation statistics show no record left alive after episodes with
# preemption, drops, the prefix cache and run_fixed). With counting on, every read of a state
# tuple's member and every row view (``obs[e]``, ``sc.order[row]``) in the loop over envs paid an
# atomic incref/decref pair, about 200 per env-step: a quarter of the compiled samples (perf, E = 256).
JIT_NO_NRT = {"cache": True, "_nrt": False}


@nb.njit(**JIT_NO_NRT)
def step_all(
    st, wl, eng, actions, admit_levels, budget_levels, drain_s, recompute_penalty, K,
    obs, mask, reward, terminated, truncated, sc, lz,
):
    """Every env applies ``actions[e]`` and runs one engine iteration; rewards, episode ends and
    the next observations (``sc``: the batch's :class:`ObsScratch`, row e for env e; ``lz``: its
    :class:`envs.core.lazy.LazyDecode`, the steady decoders kept lazily between steps)."""
    n_budget = budget_levels.shape[0]
    for e in range(actions.shape[0]):
        if e + 1 < actions.shape[0]:
            _prefetch_env(st, lz, sc, obs, mask, e + 1)
        a = actions[e]
        order = a % 3
        a //= 3
        defer = a % 2 == 1
        a //= 2
        budget = budget_levels[a % n_budget]
        admit = admit_levels[a // n_budget]
        w = st.window[e]
        N = wl.n_requests[w]
        arrival = wl.arrival_s[w]
        scale = st.time_scale[e]
        met0 = st.counters[e, C_SLO_MET]
        miss0 = st.counters[e, C_SLO_MISSED]
        rec0 = st.counters[e, C_RECOMPUTED_TOKENS]
        fin0 = st.counters[e, C_FINISHED]
        pre0 = st.counters[e, C_PREEMPTIONS]
        run0 = st.n_running[e, 0]

        now = st.clock[e]
        if st.n_running[e, 0] == 0 and st.n_queued[e, 0] == 0 and st.next_arrival[e] < N:
            now = max(now, arrival[st.next_arrival[e]] * scale)
            _enqueue_arrivals(st, wl, eng, e, now)
        # FCFS admission takes the queue's heads from the last observation (nothing changed the
        # queue since: arrivals at the start come only into an empty queue, whose heads are none).
        dt = run_iteration_lazy_inline(st, wl, eng, lz, e, admit, budget, defer, order, now, 0, e, True,
                                       sc.heads[e], sc.head_seq[e])
        if dt > 0.0:
            now += dt
        else:
            idle_to = now + eng.idle_tick_s
            if st.next_arrival[e] < N:
                idle_to = min(idle_to, max(now, arrival[st.next_arrival[e]] * scale))
            now = max(idle_to, now + 1e-6)
        st.clock[e] = now
        _enqueue_arrivals(st, wl, eng, e, now)
        # The observation, with mark_late_queued's marks in its pass over the queue (before the
        # reward, which counts them; the observation reads no counter). Finishing and preemption are
        # the only ways out of the running list, each counted, so the count's change tells how many
        # were admitted; the running requests are the same as at the last observation when none
        # was admitted, finished or preempted.
        left = st.counters[e, C_FINISHED] - fin0 + st.counters[e, C_PREEMPTIONS] - pre0
        entered = st.n_running[e, 0] - run0 + left  # admitted this step
        same = entered == 0 and left == 0
        fill_obs_inline(st, wl, eng, e, K, obs, mask, admit_levels, sc, e, 0, lz, True, same, entered)

        reward[e] = (
            (st.counters[e, C_SLO_MET] - met0)
            - (st.counters[e, C_SLO_MISSED] - miss0)
            - recompute_penalty * (st.counters[e, C_RECOMPUTED_TOKENS] - rec0) / 1000.0
        )
        empty = st.n_running[e, 0] == 0 and st.n_queued[e, 0] == 0
        terminated[e] = st.next_arrival[e] >= N and empty
        last = arrival[N - 1] * scale
        truncated[e] = (not terminated[e]) and now > last + drain_s


@nb.njit(**JIT_NO_NRT)
def step_repeat(
    st, wl, eng, actions, admit_levels, budget_levels, drain_s, recompute_penalty, K,
    obs, mask, reward, terminated, truncated, sc, lz, returns, lengths, max_steps,
):
    """:func:`step_all` with the same ``actions`` up to ``max_steps`` times, stopping after the
    first step in which an episode ends; ``returns``/``lengths`` get every step's rewards and counts
    but the last one's (``NativeVecEnv._after_advance`` adds those, as after one step). Returns the
    number of steps run."""
    for i in range(max_steps):
        step_all(st, wl, eng, actions, admit_levels, budget_levels, drain_s, recompute_penalty, K,
                 obs, mask, reward, terminated, truncated, sc, lz)
        if i == max_steps - 1:
            return max_steps
        for e in range(actions.shape[0]):
            if terminated[e] or truncated[e]:
                return i + 1
        for e in range(actions.shape[0]):
            returns[e] += reward[e]
            lengths[e] += 1
    return max_steps


@nb.njit(cache=True)
def reset_all(st, wl, eng, envs, windows, time_scales, hist_prior, K, obs, mask, admit_levels,
              n_budgets, sc, lz, units):
    for j in range(envs.shape[0]):
        e = envs[j]
        sc.unit[e] = units[j]
        materialize(st, eng, lz, e)  # the ended episode's slots as the per-request iteration leaves them
        reset_lazy(lz, e)
        reset_env_state(st, e, windows[j], time_scales[j])
        reset_replica(st, eng, e, 0)
        st.out_hist[e, :] = hist_prior
        t0 = arrival_time(st, wl, e, 0)
        st.clock[e] = t0
        st.r_clock[e, 0] = t0
        _enqueue_arrivals(st, wl, eng, e, t0)
        sc.n_order[e] = 0
        fill_obs(st, wl, eng, e, K, obs, mask, admit_levels, sc, e, 0, lz)
