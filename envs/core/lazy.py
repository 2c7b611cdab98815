"""One replica's engine iteration with its steady decoders kept lazily (KVAdmission-v0's hot path).

:func:`envs.core.replica.run_iteration` touches every running request every iteration: its KV
block, token count, gap between tokens, top gaps, TPOT check and finish check. In steady state
almost all of them are *steady decoders*: running requests that produced a token in the last
iteration and will produce one in the next. For those the per-request work is the same for all:
each gets one token, one KV token, a gap equal to the iteration's length (its last token came at
the end of the previous iteration), and a new block every ``block_size`` tokens. This module runs
the same iteration with those requests kept lazily, so an iteration costs O(1) per steady decoder
instead of the per-request updates:

* A lazy request ``s`` records, in its own per-slot fields, the iteration ``a`` from which it
  decodes every iteration as ``blocks = -(a + 1)`` (a running request's blocks are otherwise >= 0)
  and the iteration of its last token as ``sched``; that iteration is also in ``LazyDecode.end``
  (-1 for a slot that is not lazy), which the loops over the running list read instead of the
  slot's fields. Its ``generated``, ``kv_tokens``, ``gaps_over``,
  ``top_gaps`` and ``last_tok_t`` are those of iteration ``a``; after iteration ``j`` it has
  ``j - a`` more tokens and ``ceil(kv_tokens / block_size)`` blocks (true of every running
  request between iterations).
* The iteration's decode totals come from aggregates: the count of lazy requests, the sum and the
  maximum of ``kv_tokens - a`` (integers, so the float sums the iteration-time model reads are the
  same numbers the per-request loop adds up), and the count per block phase ``(kv_tokens - a) mod
  block_size`` (which of them need a new block this iteration).
* The length of every iteration, its end minus the previous one's (the gap every lazy request
  sees), goes into a ring log (``glog``); a request's gaps are its entries, replayed in order into its gap count over the SLO and its
  top gaps (the same float64 subtractions and float32 insertions as the per-request loop) when it
  leaves the lazy set (a whole block of ``GAP_BLOCK`` entries whose largest, ``gmax``, is neither over
  the SLO nor above the request's least top gap changes neither, and is passed over): when it
  finishes (its ``sched``), or before any iteration that is not
  steady. The episode's gap heap and count get the iteration's gap once per lazy request each
  iteration (the heap keeps the largest gaps as a multiset: the order of pushes does not change
  which values it holds).
* The TPOT check (``tpot_late``, evaluated at each token) fires at the first token time past the
  request's limit; a lazy request keeps that limit, lowered by a margin far below any rounding
  error, as a key (``dead``), and the exact check runs only for requests whose key has passed.

An iteration is steady when every running decoder fits (their new blocks are free, the token
budget covers one token each): the decode loop then schedules every decoder and the order of the
loop changes nothing. Otherwise (a KV shortage: preemption or deferral; a budget smaller than the
batch) every lazy request is written back first and the iteration runs the per-request loop of
``run_iteration`` unchanged. Requests that produced a token in an iteration become lazy after it.
Lazy decoding serves the mixed scheduler (``eng.prefill_first`` False) under the TPOT SLO check;
under ``slo_metric="p99_tbt"`` (a miss depends on each request's count of long gaps) no request
becomes lazy and every iteration is the per-request loop. Observations, rewards and records are the
same, bit for bit, as ``run_iteration``'s (tests/test_kv_admission_lazy.py replays both).
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

from envs.core import prefix
from envs.core.engine import step_time
from envs.core.replica import (
    EMA,
    ORDER_FCFS,
    _finish_inline,
    _push_gap,
    _push_gaps,
    ceil_div,
    insert_top_gap,
    mark_missed,
    next_queued,
    p99_allowed_over,
    pick_queued,
    preempt_newest,
    tpot_late,
)
from envs.core.state import (
    A_BUSY_S,
    A_GAP_EMA,
    A_KV_BLOCK_S,
    A_LAST_ITER_S,
    A_RECOMPUTE_EMA,
    A_TTFT_EMA,
    C_CACHE_HIT_BLOCKS,
    C_CACHE_LOOKUP_BLOCKS,
    C_CACHED_TOKENS,
    C_DECODE_TOKENS,
    C_ITERATIONS,
    C_PREFILL_TOKENS,
    C_PROMPT_TOKENS,
    QUEUED,
    RUNNING,
    SLO_P99_TBT,
)

# Per-env aggregates of the lazy set (``LazyDecode.agg[e, k]``).
G_LAZY = 0  # lazy requests
G_SUM = 1  # sum of kv_tokens - a over them
G_MAX = 2  # max of kv_tokens - a (valid when G_MAX_OK is 1)
G_MAX_OK = 3
# A lower bound of ``sched`` (the iteration of the last token) over the lazy set: 0 (the value after
# allocate_lazy and reset_lazy) until an iteration's results loop sets it, left as it is when
# requests leave the set. While the next iteration is below it and every running request is
# lazy, the results loop would only keep every request where it is: the iteration skips it.
G_NEXT_END = 4
N_AGG = 5

# The TPOT key is lowered by this relative margin (plus as much absolute, in seconds): far above
# float64 rounding (1e-16), far below an iteration (>= 1e-4 s), so the exact check is never late.
DEAD_MARGIN = 1e-9

# The ring log's entries per block of ``LazyDecode.gmax`` (a power of 2; the log holds at least one block).
GAP_BLOCK_SHIFT = 4
GAP_BLOCK = 1 << GAP_BLOCK_SHIFT


class LazyDecode(NamedTuple):
    """Lazy sets beside a ``ClusterState``, one row per replica that runs lazily: row ``e`` for
    env ``e``'s replica 0 (KVAdmission-v0, the default of every function here), or any other
    numbering the caller passes as ``row`` (Disaggregation-v0: ``e * R + r``)."""

    it: np.ndarray  # int64 [E], iterations run (with work) this episode
    t_last: np.ndarray  # float64 [E], end time of the last iteration
    glog: np.ndarray  # float64 [E, L], end of iteration j minus end of j - 1 at [e, j % L]; L > longest output
    # The largest entry of each block of GAP_BLOCK in glog, [e, (j % L) // GAP_BLOCK], written since the block's
    # first iteration (or the episode's start: then it may also hold an older, larger value, which only
    # keeps a replay from passing the block over).
    gmax: np.ndarray  # float64 [E, L // GAP_BLOCK]
    dead: np.ndarray  # float64 [E, S], the TPOT check's key (inf: no check left)
    min_dead: np.ndarray  # float64 [E], a lower bound of dead over the lazy set
    agg: np.ndarray  # int64 [E, N_AGG]
    phase: np.ndarray  # int64 [E, block_size], lazy requests per (kv_tokens - a) mod block_size
    # Per slot, beside the packed slot fields: the loops over the running list test laziness and read a
    # lazy request's last iteration here, 4 bytes a slot, instead of loading the slot's packed fields (a
    # cache line each; at E = 256 those loads, from beyond the caches, were a third of a step).
    end: np.ndarray  # int32 [E, S], a lazy request's iteration of its last token (its sched); -1: not lazy
    base: np.ndarray  # int32 [E, S], a lazy request's kv_tokens - a (G_MAX's operand)


def allocate_lazy(n_envs: int, n_slots: int, block_size: int, max_output: int) -> LazyDecode:
    """Empty lazy sets for ``n_envs`` rows (replicas) of ``n_slots`` request slots whose outputs are at most
    ``max_output`` tokens (a request decodes lazily for fewer iterations than that, so the ring log
    holds every gap it can need). Raises ``ValueError`` for a size < 1."""
    if min(n_envs, n_slots, block_size, max_output) < 1:
        raise ValueError(f"allocate_lazy: n_envs, n_slots, block_size, max_output must be >= 1, got {n_envs}, "
                         f"{n_slots}, {block_size}, {max_output}")
    L = GAP_BLOCK
    while L < max_output + 2:
        L *= 2
    return LazyDecode(
        it=np.zeros(n_envs, np.int64), t_last=np.zeros(n_envs), glog=np.zeros((n_envs, L)),
        gmax=np.zeros((n_envs, L // GAP_BLOCK)), dead=np.full((n_envs, n_slots), np.inf),
        min_dead=np.full(n_envs, np.inf),
        agg=np.zeros((n_envs, N_AGG), np.int64), phase=np.zeros((n_envs, block_size), np.int64),
        end=np.full((n_envs, n_slots), -1, np.int32), base=np.zeros((n_envs, n_slots), np.int32),
    )


@nb.njit(cache=True)
def reset_lazy(lz, e):
    """Env ``e`` starts an episode: nothing lazy, no iteration run."""
    lz.it[e] = 0
    lz.t_last[e] = 0.0
    lz.dead[e, :] = np.inf
    lz.min_dead[e] = np.inf
    lz.agg[e, :] = 0
    lz.phase[e, :] = 0
    lz.end[e, :] = -1


@nb.njit(cache=True, inline="always")
def _leave(blocks, kv_tokens, generated, sched, last_tok_t, gaps_over, top_gaps, glog, gmax, dead, agg, phase, end,
           slo_tpot, bs, e, r, z, s, upto, t_upto):
    """Write lazy request ``s`` of replica ``r`` (lazy row ``z``) back as of the end of iteration
    ``upto`` (at ``t_upto``): its tokens, KV, blocks, last token time, and its gaps replayed in
    order (gap count over ``slo_tpot``, top gaps), a whole block of the log at once where its
    largest gap (``gmax``) changes neither: not over ``slo_tpot`` and, as float32, not above the least
    kept top gap (then no gap of the block is, and ``insert_top_gap`` would keep none). Takes the
    arrays it writes, not the state tuples: an inlined helper taking a tuple pays a reference-count
    update per member array per call."""
    a = -blocks[e, r, s] - 1
    M = glog.shape[1] - 1  # L is a power of 2
    T = top_gaps.shape[3]
    kv0 = kv_tokens[e, r, s]
    b = kv0 - a
    j = a + 1
    while j <= upto:
        if j & (GAP_BLOCK - 1) == 0 and j + GAP_BLOCK - 1 <= upto:  # iterations j .. j + GAP_BLOCK - 1: a block
            mx = gmax[z, (j & M) >> GAP_BLOCK_SHIFT]
            if mx <= slo_tpot and np.float32(mx) <= top_gaps[e, r, s, T - 1]:
                j += GAP_BLOCK
                continue
        gap = glog[z, j & M]
        if gap > slo_tpot:
            gaps_over[e, r, s] += 1
        insert_top_gap(top_gaps, e, r, s, np.float32(gap))
        j += 1
    m = upto - a
    generated[e, r, s] += m
    kv = kv0 + m
    kv_tokens[e, r, s] = kv
    blocks[e, r, s] = ceil_div(kv, bs)
    sched[e, r, s] = 0
    last_tok_t[e, r, s] = t_upto
    dead[z, s] = np.inf
    end[z, s] = -1
    agg[z, G_LAZY] -= 1
    agg[z, G_SUM] -= b
    phase[z, b % bs] -= 1
    if b == agg[z, G_MAX]:
        agg[z, G_MAX_OK] = 0


@nb.njit(cache=True)
def materialize(st, eng, lz, e, r=0, row=None):
    """Every lazy request of env ``e``'s replica ``r`` (lazy row ``row``, default ``e``) written back
    (``ClusterState`` then holds what ``run_iteration`` would have); the lazy set is empty after."""
    z = e if row is None else row
    if lz.agg[z, G_LAZY] == 0:
        return
    upto = lz.it[z]
    for i in range(st.n_running[e, r]):
        s = st.run_list[e, r, i]
        if lz.end[z, s] >= 0:
            _leave(st.blocks, st.kv_tokens, st.generated, st.sched, st.last_tok_t, st.gaps_over, st.top_gaps,
                   lz.glog, lz.gmax, lz.dead, lz.agg, lz.phase, lz.end, eng.slo_tpot, eng.block_size, e, r, z, s, upto,
                   lz.t_last[z])
    lz.min_dead[z] = np.inf
    lz.agg[z, G_MAX_OK] = 0


@nb.njit(cache=True)
def materialize_all(st, eng, lz):
    """:func:`materialize` for every env's replica 0 (row ``e``)."""
    for e in range(lz.it.shape[0]):
        materialize(st, eng, lz, e)


@nb.njit(cache=True, inline="always")
def _enter(blocks, sched, generated, kv_tokens, missed, ttft, agg, phase, dead, min_dead, end, base, slo_tpot, bs,
           e, r, z, s, q, out, a, t_arr):
    """Request ``s`` of replica ``r`` (lazy row ``z``; request ``q`` of the window, ``out`` output
    tokens), which produced a token at the end of iteration ``a``, decodes lazily from there
    (``t_arr``: its arrival time). Takes arrays, not the state tuples (see ``_leave``)."""
    blocks[e, r, s] = -(a + 1)
    last = a + (out - generated[e, r, s])
    sched[e, r, s] = last
    end[z, s] = last
    b = kv_tokens[e, r, s] - a
    base[z, s] = b
    if agg[z, G_LAZY] == 0:
        agg[z, G_MAX] = b
        agg[z, G_MAX_OK] = 1
    elif agg[z, G_MAX_OK] == 1 and b > agg[z, G_MAX]:
        agg[z, G_MAX] = b
    agg[z, G_LAZY] += 1
    agg[z, G_SUM] += b
    phase[z, b % bs] += 1
    key = np.inf
    if not missed[e, r, s] and out > 1:
        key = (t_arr + ttft[e, q]) + slo_tpot * (out - 1)
        key -= DEAD_MARGIN * (abs(key) + 1.0)
    dead[z, s] = key
    if key < min_dead[z]:
        min_dead[z] = key


@nb.njit(cache=True)
def run_iteration_lazy(st, wl, eng, lz, e, admit_max, budget, defer, order, now, r=0, row=None, enter=True,
                       heads=None, head_seq=None):
    """One iteration of env ``e``'s replica ``r`` (lazy row ``row``, default ``e``) starting at ``now``, as
    :func:`envs.core.replica.run_iteration` (mixed scheduler: ``eng.prefill_first`` must be
    False) runs it, with steady decoders lazy (module docstring). Returns the iteration's
    duration in seconds; 0.0 when nothing could be scheduled. ``enter`` False: no request becomes
    lazy (Disaggregation-v0's prefill instances hand a request over after its first token).
    Requests are added to the replica between calls only as ``run_iteration``'s callers add them
    (queued, or running with ``blocks = ceil(kv_tokens / block_size)``). ``heads``/``head_seq``
    (int64 [K], optional): the queue's K lowest-``seq`` slots and their ``seq``, ascending, -1 past
    the queue's length, as the queue stands at the call (KVAdmission's observation leaves them
    so: ``envs.kv_admission.kernels.fill_obs``); FCFS admission then takes the k-th admitted from
    them (a head that is no longer queued with that ``seq``, or none left: a scan of the slots, as
    without them). The queue gains no lower ``seq`` before admission (a preemption stops it)."""
    z = e if row is None else row  # the replica's row of lz
    bs = eng.block_size
    w = st.window[e]
    k = lz.it[z]
    left = budget
    p_tokens = 0.0
    pairs = 0.0
    d_seqs = 0.0
    d_kv = 0.0
    d_long = 0.0
    p_long = 0.0
    short = False
    whole = False  # prefill_first is False: prompts are chunked
    n_lazy = lz.agg[z, G_LAZY]
    steady = False
    n_prefill = st.n_running[e, r]  # running requests still in their prefill (known when steady)

    # The arrays read per request, taken out of the state tuple once: an access through the tuple
    # in a loop pays an atomic reference-count update each time (perf: a fifth of a step).
    run_list = st.run_list
    blocks = st.blocks
    kv_tokens = st.kv_tokens
    target = st.target
    sched = st.sched
    status = st.status
    seq = st.seq
    dead = lz.dead
    end = lz.end

    if n_lazy > 0:
        # Is the iteration steady? Every decoder's new block must be free and the budget must
        # cover a token each; then the decode loop would schedule them all, in any order.
        n_run = st.n_running[e, r]
        need = lz.phase[z, (-k) % bs]
        n_dec = n_lazy
        if lz.agg[z, G_MAX_OK] == 0:
            mx = np.iinfo(np.int64).min
            for i in range(n_run):
                s = run_list[e, r, i]
                if end[z, s] >= 0:
                    mx = max(mx, np.int64(lz.base[z, s]))
            lz.agg[z, G_MAX] = mx
            lz.agg[z, G_MAX_OK] = 1
        kv_sum = lz.agg[z, G_SUM] + n_lazy * (k + 1)  # sum of kv_tokens + 1 over the decoders
        kv_max = lz.agg[z, G_MAX] + k + 1
        if n_run > n_lazy:
            for i in range(n_run):
                s = run_list[e, r, i]
                if end[z, s] >= 0:
                    continue
                kv = kv_tokens[e, r, s]
                if kv < target[e, r, s]:
                    continue
                need += ceil_div(kv + 1, bs) - blocks[e, r, s]
                n_dec += 1
                kv_sum += kv + 1
                kv_max = max(kv_max, kv + 1)
        if need <= st.free_blocks[e, r] and n_dec <= left:
            steady = True
            if n_dec > n_lazy:
                for i in range(n_run):
                    s = run_list[e, r, i]
                    if end[z, s] >= 0:
                        continue
                    kv = kv_tokens[e, r, s]
                    if kv < target[e, r, s]:
                        continue
                    blocks[e, r, s] += ceil_div(kv + 1, bs) - blocks[e, r, s]
                    sched[e, r, s] = -1
            st.free_blocks[e, r] -= need
            left -= n_dec
            d_seqs = float(n_dec)
            d_kv = float(kv_sum)
            d_long = float(kv_max)
            n_prefill = n_run - n_dec
        else:
            materialize(st, eng, lz, e, r, z)

    if not steady:
        # 1. Decodes, oldest first (run_iteration's loop, every request written back).
        i = 0
        while i < st.n_running[e, r] and left > 0:
            s = st.run_list[e, r, i]
            kv = st.kv_tokens[e, r, s]
            if kv < st.target[e, r, s]:
                i += 1
                continue
            need = ceil_div(kv + 1, bs) - st.blocks[e, r, s]
            if need > st.free_blocks[e, r]:
                short = True
                if defer and i > 0:
                    i += 1
                    continue
                while need > st.free_blocks[e, r] and st.run_list[e, r, st.n_running[e, r] - 1] != s:
                    preempt_newest(st, wl, e, r)
                if need > st.free_blocks[e, r]:
                    preempt_newest(st, wl, e, r)  # s itself
                    break
            st.blocks[e, r, s] += need
            st.free_blocks[e, r] -= need
            st.sched[e, r, s] = -1
            left -= 1
            d_seqs += 1.0
            d_kv += kv + 1
            d_long = max(d_long, kv + 1.0)
            i += 1
    # 2. Ongoing prefills, chunked, limited by free blocks (lazy requests are decoders: skipped).
    if n_prefill > 0:
        run_list = st.run_list
        blocks = st.blocks
        for i in range(st.n_running[e, r]):
            if left <= 0:
                break
            s = run_list[e, r, i]
            if end[z, s] >= 0:
                continue
            kv = st.kv_tokens[e, r, s]
            if kv >= st.target[e, r, s]:
                continue
            chunk = min(st.target[e, r, s] - kv, left)
            room = (st.blocks[e, r, s] + st.free_blocks[e, r]) * bs - kv
            chunk = min(chunk, room)
            if chunk <= 0:
                continue
            need = max(ceil_div(kv + chunk, bs) - st.blocks[e, r, s], 0)
            st.blocks[e, r, s] += need
            st.free_blocks[e, r] -= need
            st.sched[e, r, s] = chunk
            left -= chunk
            p_tokens += chunk
            pairs += chunk * (kv + (chunk + 1) / 2.0)
            p_long = max(p_long, kv + chunk + 0.0)
    # 3. New requests (run_iteration's loop).
    admitted = 0
    while (
        not short
        and admitted < admit_max
        and left > 0
        and st.n_queued[e, r] > 0
        and st.n_running[e, r] < eng.max_seqs
    ):
        # FCFS (the lowest seq, pick_queued's choice) written out: a call taking the state tuples
        # paid a reference-count update per member array, about 50 per admission (issue 17)
        if order == ORDER_FCFS:
            s = -1
            if heads is not None and admitted < heads.shape[0]:
                h = heads[admitted]
                if h >= 0 and status[e, r, h] == QUEUED and seq[e, r, h] == head_seq[admitted]:
                    s = h
            if s < 0:
                best_seq = 0
                j = -1
                for _ in range(st.n_queued[e, r]):
                    j = next_queued(status, e, r, j + 1)
                    if s < 0 or seq[e, r, j] < best_seq:
                        s, best_seq = j, seq[e, r, j]
        else:
            s = pick_queued(st, wl, eng, e, r, order, now)
        q = st.req[e, r, s]
        tgt = st.target[e, r, s]
        cached_blocks = 0
        if eng.cache_on:
            n_chain = wl.chain_len[w, q]
            cached_blocks = prefix.match_length(st.pc_key, st.pc_table, e, r, wl.chain_ids[w, q], n_chain)
        cached = min(cached_blocks * eng.chain_block_tokens, tgt - 1)
        if whole and tgt - cached > left:
            break
        chunk = min(tgt - cached, left)
        need = ceil_div(cached + chunk, bs)
        if need > st.free_blocks[e, r]:
            break
        if eng.cache_on:
            prefix.touch(st.pc_key, st.pc_last, st.pc_table, e, r, wl.chain_ids[w, q], cached_blocks, now)
            st.counters[e, C_CACHE_HIT_BLOCKS] += cached_blocks
            st.counters[e, C_CACHE_LOOKUP_BLOCKS] += wl.chain_len[w, q]
        st.counters[e, C_CACHED_TOKENS] += cached
        st.counters[e, C_PROMPT_TOKENS] += tgt
        st.status[e, r, s] = RUNNING
        st.n_queued[e, r] -= 1
        st.run_list[e, r, st.n_running[e, r]] = s
        st.n_running[e, r] += 1
        st.kv_tokens[e, r, s] = cached
        st.blocks[e, r, s] = need
        st.free_blocks[e, r] -= need
        st.sched[e, r, s] = chunk
        left -= chunk
        p_tokens += chunk
        pairs += chunk * (cached + (chunk + 1) / 2.0)
        p_long = max(p_long, cached + chunk + 0.0)
        admitted += 1

    if p_tokens == 0.0 and d_seqs == 0.0:
        return 0.0
    dt = step_time(eng.coeffs, p_tokens, pairs, d_seqs, d_kv, d_long, p_long)
    t_end = now + dt
    k1 = k + 1
    it_gap = t_end - lz.t_last[z]  # a lazy request's gap: its last token came at the last iteration's end
    jg = k1 & (lz.glog.shape[1] - 1)
    lz.glog[z, jg] = it_gap
    jb = jg >> GAP_BLOCK_SHIFT
    if jg & (GAP_BLOCK - 1) == 0 or it_gap > lz.gmax[z, jb]:  # a block's first entry, or a larger one
        lz.gmax[z, jb] = it_gap
    lz.t_last[z] = t_end
    lz.it[z] = k1

    max_gap = 0.0
    scale = st.time_scale[e]
    if steady:
        # Every lazy request's token: the gap since the last iteration's end, once per request.
        gap = it_gap
        max_gap = gap
        _push_gaps(st.gap_heap, st.counters, e, gap, n_lazy)
        if t_end >= lz.min_dead[z]:  # some lazy request's TPOT check may fire at this token
            lo = np.inf
            for i in range(st.n_running[e, r]):
                s = run_list[e, r, i]
                if end[z, s] < 0:
                    continue
                if dead[z, s] <= t_end:
                    q = st.req[e, r, s]
                    if st.missed[e, r, s]:
                        dead[z, s] = np.inf
                    elif tpot_late(t_end, wl.arrival_s[w, q] * scale + st.ttft[e, q], wl.output[w, q],
                                   eng.slo_tpot):
                        mark_missed(st.missed, st.counters, e, r, s)
                        dead[z, s] = np.inf
                lo = min(lo, dead[z, s])
            lz.min_dead[z] = lo

    # Results of the iteration, then drop finished requests from the running list. The arrays the
    # loop reads are taken out of the tuples once (an access through a tuple, or an array argument
    # taken from one, pays an atomic reference-count update each time); _finish inlined for the same reason.
    req = st.req
    generated = st.generated
    ttft_q = st.ttft
    missed = st.missed
    counters = st.counters
    accum = st.accum
    last_tok_t = st.last_tok_t
    gap_heap = st.gap_heap
    gaps_over = st.gaps_over
    top_gaps = st.top_gaps
    output_w = wl.output[w]
    arrival_w = wl.arrival_s[w]
    glog = lz.glog
    agg = lz.agg
    phase = lz.phase
    min_dead = lz.min_dead
    keep = 0
    n = st.n_running[e, r]
    p99_check = eng.slo_metric == SLO_P99_TBT
    if steady and n == n_lazy and k1 < agg[z, G_NEXT_END]:
        n = 0  # every running request is lazy (none admitted) and none has its last token now
        keep = n_lazy
    next_end = np.iinfo(np.int64).max  # G_NEXT_END after the loop: the least sched of the lazy set
    for i in range(n):
        s = run_list[e, r, i]
        last = end[z, s]
        if last >= 0:  # lazy: decided from end alone, its slot's fields are not loaded
            if last == k1:  # its last token
                _leave(blocks, kv_tokens, generated, sched, last_tok_t, gaps_over, top_gaps,
                       glog, lz.gmax, dead, agg, phase, end, eng.slo_tpot, bs, e, r, z, s, k1, t_end)
                _finish_inline(st, wl, eng, e, r, s, t_end)
            else:
                run_list[e, r, keep] = s
                keep += 1
                next_end = min(next_end, np.int64(last))
            continue
        work = sched[e, r, s]
        sched[e, r, s] = 0
        q = req[e, r, s]
        out_q = output_w[q]
        allowed = p99_allowed_over(out_q - 1)
        tok = False  # a token after the first: record its gap
        first = False
        if work == -1:
            kv_tokens[e, r, s] += 1
            tok = True
        elif work > 0:
            kv_tokens[e, r, s] += work
            if kv_tokens[e, r, s] == target[e, r, s]:
                if generated[e, r, s] == 0:
                    ttft = t_end - arrival_w[q] * scale
                    ttft_q[e, q] = ttft
                    if ttft > eng.slo_ttft:
                        mark_missed(missed, counters, e, r, s)
                    accum[e, A_TTFT_EMA] += EMA * (ttft - accum[e, A_TTFT_EMA])
                    generated[e, r, s] += 1
                    last_tok_t[e, r, s] = t_end
                    first = True
                else:
                    tok = True
        if tok:
            generated[e, r, s] += 1
            gap = t_end - last_tok_t[e, r, s]
            _push_gap(gap_heap, counters, e, gap)
            if gap > eng.slo_tpot:
                gaps_over[e, r, s] += 1
                if p99_check and gaps_over[e, r, s] > allowed:
                    mark_missed(missed, counters, e, r, s)
            insert_top_gap(top_gaps, e, r, s, np.float32(gap))
            if not p99_check and tpot_late(t_end, arrival_w[q] * scale + ttft_q[e, q], out_q, eng.slo_tpot):
                mark_missed(missed, counters, e, r, s)
            max_gap = max(max_gap, gap)
            last_tok_t[e, r, s] = t_end
        if generated[e, r, s] >= out_q:
            _finish_inline(st, wl, eng, e, r, s, t_end)
        else:
            run_list[e, r, keep] = s
            keep += 1
            if (tok or first) and not p99_check and enter:
                _enter(blocks, sched, generated, kv_tokens, missed, ttft_q, agg, phase, dead,
                       min_dead, end, lz.base, eng.slo_tpot, bs, e, r, z, s, q, out_q, k1, arrival_w[q] * scale)
                next_end = min(next_end, np.int64(sched[e, r, s]))
    if n > 0:
        agg[z, G_NEXT_END] = next_end
    st.n_running[e, r] = keep

    used = eng.capacity_blocks - st.free_blocks[e, r]
    st.counters[e, C_PREFILL_TOKENS] += np.int64(p_tokens)
    st.counters[e, C_DECODE_TOKENS] += np.int64(d_seqs)
    st.counters[e, C_ITERATIONS] += 1
    st.accum[e, A_BUSY_S] += dt
    st.accum[e, A_KV_BLOCK_S] += used * dt
    st.accum[e, A_LAST_ITER_S] = dt
    if max_gap > 0.0:
        st.accum[e, A_GAP_EMA] += EMA * (max_gap - st.accum[e, A_GAP_EMA])
    st.accum[e, A_RECOMPUTE_EMA] *= 1.0 - EMA
    st.r_clock[e, r] = t_end
    return dt


# Compiled for inlining into the batch loop (numba IR inlining): a compiled call that takes the state
# tuples pays an atomic reference-count update per member array, about 50 of them per call.
run_iteration_lazy_inline = nb.njit(inline="always")(run_iteration_lazy.py_func)
