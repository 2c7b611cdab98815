"""One serving replica, as vLLM / SGLang run it, in numba kernels over the batch state.

Semantics (one call of :func:`run_iteration` = one engine iteration):

* Continuous batching with paged KV: a running request holds ``ceil(kv_tokens / block_size)``
  blocks, allocated as its tokens are computed (vLLM V1 ``KVCacheManager.allocate_slots``).
* Stall-free chunked prefill under a token budget: running decodes are scheduled first, then
  ongoing prefill chunks, then new requests, until the budget is spent (Sarathi-Serve, OSDI'24,
  Sec. 4; vLLM's chunked-prefill scheduler orders decodes before prefills the same way).
* ``eng.prefill_first`` (vLLM V0, SGLang; the published-point validation uses it, the environments
  do not): an iteration is a prefill batch whenever a waiting request can start (ongoing chunk
  first, then new requests; whole prompts unless ``eng.chunked_prefill``), decodes run only in
  iterations without prefill (vLLM V0 ``Scheduler._schedule_default``; SGLang
  ``Scheduler.get_next_batch_to_run``).
* Preemption by recompute: when a decode needs a block and none is free, the newest running
  request is preempted (vLLM ``Scheduler``: ``self.running.pop()`` for FCFS), its KV freed and
  the request put back first in line with its generated tokens to recompute as prompt.
  With ``defer`` the short request instead waits an iteration, except the oldest running one,
  which always preempts so the batch cannot deadlock. Either way no new request starts in an
  iteration that ran short (vLLM V1 admits waiting requests only when it preempted none).
* Prefix caching keyed by block chains (see ``prefix.py``): a newly admitted request skips the
  prefill of its cached prefix (at least one token is always computed, as in vLLM); the prompt's
  blocks enter the cache when the request finishes (SGLang inserts into its radix tree then).
* Iteration time from ``hwmodels.iteration_time`` with the iteration's prefill tokens, causal
  attention pairs, decode sequences, KV tokens read, the longest decode context and the deepest
  prefill context (kv + chunk).

Per request it records TTFT, E2E, TPOT and the p99 of its gaps between tokens (see
``state.TOP_GAPS``); per episode the largest gaps between tokens (``state.gap_heap``). The SLO
check is ``eng.slo_metric`` (``envs/slo.py``): TTFT and TPOT as MLPerf Inference and DistServe
define them, or TTFT and each request's p99 gap. A request is marked missed (``C_SLO_MISSED``) the
moment its outcome is certain: its wait passes the TTFT SLO, or (TPOT) the time since its first
token already exceeds SLO_tpot x (output - 1) so that even instant remaining tokens cannot bring
the mean back, or (p99_tbt) more gaps exceed the limit than its p99 tolerates.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import prefix
from envs.core.prefetch import prefetch
from envs.core.engine import _coefficients, _decode_step_time, step_time_inline
from envs.core.state import (
    A_BUSY_S,
    A_GAP_EMA,
    A_KV_BLOCK_S,
    A_LAST_ITER_S,
    A_RECOMPUTE_EMA,
    A_TTFT_EMA,
    C_ARRIVED,
    C_CACHE_HIT_BLOCKS,
    C_CACHE_LOOKUP_BLOCKS,
    C_CACHED_TOKENS,
    C_DECODE_TOKENS,
    C_DROPPED,
    C_FAILED,
    C_FINISHED,
    C_GAPS,
    C_ITERATIONS,
    C_OUTPUT_TOKENS_MET,
    C_PREEMPTIONS,
    C_PREFILL_TOKENS,
    C_PROMPT_TOKENS,
    C_RECOMPUTED_TOKENS,
    C_REJECTED,
    C_SLO_MET,
    C_SLO_MISSED,
    DROPPED,
    FAILED,
    FINISHED,
    FREE,
    GAP_LOG,
    N_HIST_BINS,
    QUEUED,
    REJECTED,
    RUNNING,
    SLO_P99_TBT,
    SLO_TPOT,
)

# Queue orders for admission.
ORDER_FCFS = 0  # arrival order (vLLM default)
ORDER_SJF = 1  # shortest predicted output first, then arrival
ORDER_EDF = 2  # oldest request that can still meet its TTFT SLO, else oldest

EMA = 0.1  # weight of the newest sample in the recent-latency averages


@nb.njit(cache=True, inline="always")
def ceil_div(a, b):
    return -(-a // b)


@nb.njit(cache=True)
def arrival_time(st, wl, e, i):
    """Arrival of request ``i`` of env ``e``'s window (for cold paths; hot loops inline it)."""
    return wl.arrival_s[st.window[e], i] * st.time_scale[e]


@nb.njit(cache=True, inline="always")
def hist_bin(tokens):
    b = 0
    t = tokens
    while t > 1 and b < N_HIST_BINS - 1:
        t >>= 1
        b += 1
    return b


@nb.njit(cache=True, inline="always")
def p99_allowed_over(n_gaps):
    """Gaps that may exceed the TBT SLO while the nearest-rank p99 gap still meets it."""
    return n_gaps - (99 * n_gaps + 99) // 100


@nb.njit(cache=True, inline="always")
def tpot_late(now, first_tok_t, out, slo_tpot):
    """True when a request of ``out`` output tokens whose first token came at ``first_tok_t``
    cannot meet the TPOT SLO even if every remaining token arrives at ``now``:
    TPOT = (t_last - t_first) / (out - 1) > SLO_tpot. The finish check uses this same expression."""
    return out > 1 and now - first_tok_t > slo_tpot * (out - 1)


@nb.njit(cache=True, inline="always")
def rejected_at_arrival(eng, prompt, output):
    """Whether the engine refuses a request of ``prompt`` + ``output`` tokens at arrival.

    As vLLM does: its engine refuses a prompt that leaves no room for one output token within
    max_model_len (v1 ``Processor._validate_model_input``: "The decoder prompt (length N) plus the
    number of requested output tokens (at least 1) is longer than the maximum model length"), and
    its OpenAI server refuses prompt + max_tokens > max_model_len (``OpenAIServing._validate_input``:
    "This model's maximum context length is ..."); a request the trace records with ``output``
    tokens asked for at least that many. A request whose whole sequence does not fit the KV pool
    is refused the same way (vLLM will not start with a max_model_len the KV pool cannot hold, so
    such a request would meet the context-length check there).
    """
    need = prompt + max(output, 1)
    return need > eng.max_model_len or need > eng.capacity_blocks * eng.block_size


@nb.njit(cache=True)
def _accepted(eng, prompt, output):
    out = np.empty(prompt.shape[0], np.bool_)
    for i in range(prompt.shape[0]):
        out[i] = not rejected_at_arrival(eng, prompt[i], output[i])
    return out


def accepted_at_arrival(eng, prompt: np.ndarray, output: np.ndarray) -> np.ndarray:
    """bool [n]: which of ``n`` requests (``prompt``, ``output`` tokens, int [n]) ``eng`` accepts,
    i.e. does not reject at arrival (:func:`rejected_at_arrival`, the one rule). Scenario builders
    take rates and means over these only, so that a request the engine refuses leaves the others
    served as if it were absent (../shared/cases/edge_prompt_200k.jsonl). ``ValueError`` for
    arrays of different lengths."""
    prompt, output = np.asarray(prompt, np.int64), np.asarray(output, np.int64)
    if prompt.shape != output.shape or prompt.ndim != 1:
        raise ValueError(f"accepted_at_arrival: prompt and output must be 1-D of one length, got shapes "
                         f"{prompt.shape} and {output.shape}")
    return _accepted(eng, prompt, output)


def accepted_values(values: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """``values`` [n] of the ``accepted`` [n] requests (bool), for the means and maxima a scenario
    takes over served requests; all of them when the engine accepts none (nothing is served then)."""
    values = np.asarray(values)
    return values[accepted] if np.any(accepted) else values


def longest_accepted_output(eng, parts) -> tuple[int, list[np.ndarray]]:
    """The longest output (tokens, int) over the requests ``eng`` accepts at arrival in ``parts``
    (a non-empty sequence of traces: anything with ``prompt_tokens`` and ``output_tokens``, int
    [n]), each part's maximum taken by :func:`accepted_values` (all its requests when the engine
    accepts none); and each part's mask, bool [n] (:func:`accepted_at_arrival`), for callers that
    take other figures over the same requests. Scenario builders set ``eng.max_output`` (the
    ``max_tokens`` that reservation-based admission reserves for every request) to it, so that a
    rejected request's output does not enlarge it. ``ValueError`` for no parts or a part whose two
    arrays differ in length."""
    parts = list(parts)
    if not parts:
        raise ValueError("longest_accepted_output: no parts (traces) given")
    masks = [accepted_at_arrival(eng, p.prompt_tokens, p.output_tokens) for p in parts]
    return max(int(accepted_values(p.output_tokens, ok).max()) for p, ok in zip(parts, masks)), masks


@nb.njit(cache=True)
def enqueue(st, wl, eng, e, r, i):
    """Request ``i`` of env ``e``'s window arrives at replica ``r``; False if not queued.

    A request the trace marks failed, or one the engine rejects (:func:`rejected_at_arrival`),
    arrives and ends at once with fate FAILED / REJECTED, uses no KV memory or compute, and is
    counted in ``C_FAILED`` / ``C_REJECTED`` (not as an SLO miss: no policy could serve it);
    a request that finds the queue full is dropped (an SLO miss).
    """
    st.counters[e, C_ARRIVED] += 1
    w = st.window[e]
    if wl.failed[w, i]:
        st.fate[e, i] = FAILED
        st.counters[e, C_FAILED] += 1
        return False
    if rejected_at_arrival(eng, wl.prompt[w, i], wl.output[w, i]):
        st.fate[e, i] = REJECTED
        st.counters[e, C_REJECTED] += 1
        return False
    S = st.status.shape[2]
    if st.n_queued[e, r] + st.n_running[e, r] >= S:
        st.fate[e, i] = DROPPED
        st.counters[e, C_DROPPED] += 1
        st.counters[e, C_SLO_MISSED] += 1
        return False
    s = 0
    while st.status[e, r, s] != FREE:
        s += 1
    st.status[e, r, s] = QUEUED
    st.req[e, r, s] = i
    st.seq[e, r, s] = st.next_seq[e, r]
    st.next_seq[e, r] += 1
    st.target[e, r, s] = wl.prompt[st.window[e], i]
    st.kv_tokens[e, r, s] = 0
    st.generated[e, r, s] = 0
    st.blocks[e, r, s] = 0
    st.gaps_over[e, r, s] = 0
    st.missed[e, r, s] = False
    st.top_gaps[e, r, s, :] = 0.0
    st.sched[e, r, s] = 0
    st.n_queued[e, r] += 1
    return True


@nb.njit(cache=True, inline="always")
def mark_missed(missed, counters, e, r, s):
    """The request can no longer meet its SLO: count it now (a dense, exact signal).

    Takes the two arrays, not the state tuple: passing the tuple into a helper costs a
    reference-count update per member array, which dominated the iteration's cost.
    """
    if not missed[e, r, s]:
        missed[e, r, s] = True
        counters[e, C_SLO_MISSED] += 1


@nb.njit(cache=True, inline="always")
def next_queued(status, e, r, start):
    """First queued slot at or after ``start`` (-1 if none). Slots fill from the lowest index,
    so a loop over the ``n_queued`` queued slots ends early instead of scanning every slot."""
    for s in range(start, status.shape[2]):
        if status[e, r, s] == QUEUED:
            return s
    return -1


@nb.njit(cache=True)
def mark_late_queued(st, wl, eng, e, r, now):
    """Queued requests without a first token whose wait already exceeds the TTFT SLO."""
    if st.n_queued[e, r] == 0:
        return
    arrival = wl.arrival_s[st.window[e]]
    scale = st.time_scale[e]
    # The arrays read per queued request, taken out of the tuples once: an access through a tuple
    # in the loop pays an atomic reference-count update (perf: KVAdmission's inlined copy of this loop)
    status = st.status
    missed = st.missed
    req = st.req
    generated = st.generated
    counters = st.counters
    slo_ttft = eng.slo_ttft
    s = -1
    for _ in range(st.n_queued[e, r]):
        s = next_queued(status, e, r, s + 1)
        if missed[e, r, s]:
            continue
        q = req[e, r, s]
        if generated[e, r, s] == 0:
            if now - arrival[q] * scale > slo_ttft:
                mark_missed(missed, counters, e, r, s)
        elif eng.slo_metric == SLO_TPOT:  # preempted after its first token
            if tpot_late(now, arrival[q] * scale + st.ttft[e, q], wl.output[st.window[e], q], eng.slo_tpot):
                mark_missed(missed, counters, e, r, s)


@nb.njit(cache=True)
def pick_queued(st, wl, eng, e, r, order, now):
    """Slot of the queued request to admit next under ``order``; -1 if none."""
    w = st.window[e]
    arrival = wl.arrival_s[w]
    scale = st.time_scale[e]
    best = -1
    best_k1 = 0
    best_k2 = 0
    fallback = -1
    fallback_seq = 0
    s = -1
    for _ in range(st.n_queued[e, r]):
        s = next_queued(st.status, e, r, s + 1)
        sq = st.seq[e, r, s]
        if order == ORDER_SJF:
            k1 = np.int64(wl.pred_bucket[w, st.req[e, r, s]])
        elif order == ORDER_EDF:
            if fallback < 0 or sq < fallback_seq:
                fallback, fallback_seq = s, sq
            started = st.generated[e, r, s] > 0
            late = now - arrival[st.req[e, r, s]] * scale > eng.slo_ttft
            if late and not started:
                continue
            k1 = 0
        else:
            k1 = 0
        if best < 0 or k1 < best_k1 or (k1 == best_k1 and sq < best_k2):
            best, best_k1, best_k2 = s, k1, sq
    if best < 0:
        return fallback
    return best


@nb.njit(cache=True)
def preempt_newest(st, wl, e, r):
    """Preempt the most recently admitted running request; returns its slot."""
    n = st.n_running[e, r] - 1
    s = st.run_list[e, r, n]
    st.n_running[e, r] = n
    st.free_blocks[e, r] += st.blocks[e, r, s]
    st.counters[e, C_PREEMPTIONS] += 1
    st.counters[e, C_RECOMPUTED_TOKENS] += st.kv_tokens[e, r, s]
    st.accum[e, A_RECOMPUTE_EMA] += st.kv_tokens[e, r, s]
    st.blocks[e, r, s] = 0
    st.kv_tokens[e, r, s] = 0
    st.sched[e, r, s] = 0
    st.status[e, r, s] = QUEUED
    st.n_queued[e, r] += 1
    # Recompute the prompt and every generated token, then sample the next one.
    st.target[e, r, s] = wl.prompt[st.window[e], st.req[e, r, s]] + st.generated[e, r, s]
    return s


@nb.njit(cache=True, inline="always")
def insert_top_gap(top_gaps, e, r, s, g):
    """Keep request ``s``'s T largest gaps in ``top_gaps[e, r, s]`` [T] (float32, descending; T is TOP_GAPS, or
    fewer where the scenario's outputs are short: state.allocate): insert ``g``
    if it beats the smallest kept one. Inserting a set of gaps in any order gives the same list, which is
    what lets decode runs and the lazy decoders insert a stretch's gaps at its end."""
    T = top_gaps.shape[3]
    if not g <= top_gaps[e, r, s, T - 1]:
        k = T - 1
        while k > 0 and top_gaps[e, r, s, k - 1] < g:
            top_gaps[e, r, s, k] = top_gaps[e, r, s, k - 1]
            k -= 1
        top_gaps[e, r, s, k] = g


@nb.njit(cache=True, inline="always")
def _push_gap(gap_heap, counters, e, gap):
    """:func:`_push_gaps` of one gap."""
    _push_gaps(gap_heap, counters, e, gap, 1)


@nb.njit(cache=True, inline="always")
def _gap_sift_down(gap_heap, e, k, K, gap, cnt):
    """Place the entry (``gap``, ``cnt``) at position ``k`` of env ``e``'s gap heap of ``K`` entries and sift it
    down (state.py's gap heap layout: 1-indexed, the children of k at 2k and 2k + 1)."""
    while True:
        c = 2 * k
        if c > K:
            break
        # Hint the lines of k's great-grandchildren (8k .. 8k + 7), two levels ahead of the loads: below its
        # first levels the heap (35 KB per env at E = 256) is out of cache, a stall per level otherwise.
        # (128 bytes: two or three cache lines).
        prefetch(gap_heap, (e, min(8 * k, K), 0))
        prefetch(gap_heap, (e, min(8 * k + 4, K), 0))
        prefetch(gap_heap, (e, min(8 * k + 7, K), 0))
        if c < K and gap_heap[e, c + 1, 0] < gap_heap[e, c, 0]:
            c += 1
        if gap_heap[e, c, 0] >= gap:
            break
        gap_heap[e, k, 0] = gap_heap[e, c, 0]
        gap_heap[e, k, 1] = gap_heap[e, c, 1]
        k = c
    gap_heap[e, k, 0] = gap
    gap_heap[e, k, 1] = cnt


@nb.njit(cache=True, inline="always")
def _push_gaps(gap_heap, counters, e, gap, m):
    """Push the gap ``gap`` (s) ``m`` times into env ``e``'s episode gap heap (state.py's layout, above
    ``gap_heap_size``: the G largest gaps as (gap, count) entries) and count them in ``C_GAPS``: the heap then
    keeps the G largest of every gap pushed, the same multiset as ``m`` pushes into a plain heap of G gaps.

    One operation for the ``m`` (an iteration's gap, once per lazy decoder or per decoding request): while
    there is no room, it takes the units it needs from the smallest entries below ``gap`` (the root's count
    lowered, or the root removed), then adds the units that got in as one entry; a gap at most the least kept
    one, with no room, is only counted. Indexes ``gap_heap[e, k, j]`` directly: a row view per token would
    cost a reference-count update (an atomic add and subtract) on every call (issue 17)."""
    G = gap_heap.shape[1] - 1
    n = counters[e, C_GAPS]
    counters[e, C_GAPS] = n + m
    if n >= G and not gap_heap[e, 1, 0] < gap:  # full (K >= 1), and gap is no larger than the least kept
        return
    K = np.int64(gap_heap[e, 0, 0]) if n > 0 else np.int64(0)
    room = G - min(n, G)
    need = m - room  # units to push out for all m to get in
    while need > 0 and K > 0 and gap_heap[e, 1, 0] < gap:
        c = np.int64(gap_heap[e, 1, 1])
        if c > need:  # part of the root goes: its gap stays the least
            gap_heap[e, 1, 1] = c - need
            need = 0
            break
        need -= c
        if need <= 0:  # the root goes whole, the last to go: the new entry takes its place
            _gap_sift_down(gap_heap, e, 1, K, gap, float(m))
            gap_heap[e, 0, 0] = K  # roots removed before this one lowered it
            return
        # the root goes whole and more must: the last entry takes its place
        last_g = gap_heap[e, K, 0]
        last_c = gap_heap[e, K, 1]
        K -= 1
        if K > 0:
            _gap_sift_down(gap_heap, e, 1, K, last_g, last_c)
    got = m - max(need, 0)  # units of gap that get in
    if got > 0:
        K += 1
        k = K
        while k > 1:
            p = k >> 1
            if gap_heap[e, p, 0] <= gap:
                break
            gap_heap[e, k, 0] = gap_heap[e, p, 0]
            gap_heap[e, k, 1] = gap_heap[e, p, 1]
            k = p
        gap_heap[e, k, 0] = gap
        gap_heap[e, k, 1] = float(got)
    gap_heap[e, 0, 0] = K


@nb.njit(cache=True)
def _finish(st, wl, eng, e, r, s, now):
    w = st.window[e]
    i = st.req[e, r, s]
    out = st.generated[e, r, s]
    n_gaps = out - 1
    rank = n_gaps - (99 * n_gaps + 99) // 100 + 1  # nearest-rank p99, counted from the top
    tbt = 0.0
    if n_gaps > 0:
        tbt = st.top_gaps[e, r, s, min(rank, st.top_gaps.shape[3]) - 1]
    t_arr = wl.arrival_s[w, i] * st.time_scale[e]
    if eng.slo_metric == SLO_P99_TBT:
        decode_ok = st.gaps_over[e, r, s] <= p99_allowed_over(n_gaps)
    else:
        decode_ok = not tpot_late(now, t_arr + st.ttft[e, i], out, eng.slo_tpot)
    met = st.ttft[e, i] <= eng.slo_ttft and decode_ok
    st.fate[e, i] = FINISHED
    st.e2e[e, i] = now - t_arr
    st.tbt_p99[e, i] = tbt
    if n_gaps > 0:
        st.tpot[e, i] = (st.e2e[e, i] - st.ttft[e, i]) / n_gaps
    st.slo_met[e, i] = met
    st.counters[e, C_FINISHED] += 1
    if met:
        st.counters[e, C_SLO_MET] += 1
        st.counters[e, C_OUTPUT_TOKENS_MET] += out
    else:
        mark_missed(st.missed, st.counters, e, r, s)
    st.out_hist[e, hist_bin(out)] += 1.0
    if eng.cache_on:
        n = wl.chain_len[w, i]
        chain = wl.chain_ids[w, i]
        prefix.insert_chain(prefix.cache_of(st), st.pc_scratch, e, r, chain, n, now)
    st.free_blocks[e, r] += st.blocks[e, r, s]
    st.blocks[e, r, s] = 0
    st.status[e, r, s] = FREE


@nb.njit(cache=True, inline="always")
def _blocks_due(kv_tokens, run_list, e, r, n, bs, j):
    """Of the replica's ``n`` decoders (every one holding ``ceil(kv_tokens / bs)`` blocks), how many
    need a new block in iteration ``j`` of a decode run (a token whose KV starts a block: ``kv + j``
    a multiple of ``bs``), and the next iteration after ``j`` in which any does."""
    due = 0
    nxt = j + bs
    for i in range(n):
        kv = kv_tokens[e, r, run_list[e, r, i]] + j
        if kv % bs == 0:
            due += 1
        nxt = min(nxt, j + bs - kv % bs)
    return due, nxt


@nb.njit(cache=True, inline="always")
def _decode_run_start(st, wl, eng, e, r, budget):
    """Iterations (at most ``GAP_LOG``) that replica ``r`` can run as a decode run from its clock:
    nothing queued, every running request decoding with its last token at the clock and
    ``ceil(kv_tokens / block_size)`` blocks, the budget covering one token each, and no request
    finishing (a finishing iteration runs ``run_iteration``'s loop). 0 where any of it fails."""
    n = st.n_running[e, r]
    if n == 0 or st.n_queued[e, r] != 0 or budget < n:
        return 0
    now = st.r_clock[e, r]
    w = st.window[e]
    m = GAP_LOG
    for i in range(n):
        s = st.run_list[e, r, i]
        kv = st.kv_tokens[e, r, s]
        if kv < st.target[e, r, s] or st.blocks[e, r, s] != ceil_div(kv, eng.block_size) or st.last_tok_t[e, r, s] != now:
            return 0
        m = min(m, wl.output[w, st.req[e, r, s]] - st.generated[e, r, s] - 1)
    return max(m, 0)


@nb.njit(cache=True)
def decode_run(st, wl, eng, e, r, budget, until, busy):
    """Replica ``r``'s iterations before ``until`` while its batch is one set of decoders (see
    ``_decode_run_start``), with ``run_iteration``'s results bit for bit at a cost per iteration of
    the step time and the episode gap heap alone; returns the iterations run (0: not a decode run).

    Why it can: in such an iteration every request gets one token and one KV token, and its gap is
    the iteration's end minus its start (its last token came at the start), the same float for
    all. The iteration's totals (decode tokens, KV tokens read, longest context) grow by fixed steps,
    so the step time needs no loop over requests; new blocks come every ``block_size`` tokens per
    request (``_blocks_due``); the run stops before an iteration whose new blocks are not free (that
    one preempts). The per-iteration records that depend on the order of iterations (clocks, the
    env's accumulators, ``busy``, the gap heap, pushed once per request as the request loop does)
    are written per iteration; each request's own records are brought up to date once at the end:
    tokens, blocks and the last token time; its gaps over the TBT SLO (counted per iteration, the
    same for all); its top gaps (``st.gap_log`` holds the run's gaps: inserting a set of gaps into
    the top-T list gives the same list in any order, so the run's T largest go in, largest first, until
    one does not enter); its TPOT check (``tpot_late``, which once true stays true as the
    clock grows, so the last iteration's check marks what any earlier one would have marked) or its
    p99 check (the count of long gaps only grows)."""
    m_max = _decode_run_start(st, wl, eng, e, r, budget)
    if m_max == 0 or not st.r_clock[e, r] < until:
        return 0
    n = st.n_running[e, r]
    bs = eng.block_size
    kv_tokens, run_list, free_blocks, r_clock = st.kv_tokens, st.run_list, st.free_blocks, st.r_clock
    accum, gap_heap, counters, gap_log = st.accum, st.gap_heap, st.counters, st.gap_log
    kv_sum = 0
    kv_max = 0
    for i in range(n):
        kv = kv_tokens[e, r, run_list[e, r, i]]
        kv_sum += kv
        kv_max = max(kv_max, kv)
    c = _coefficients(eng.coeffs)
    d = float(n)
    _, next_due = _blocks_due(kv_tokens, run_list, e, r, n, bs, -1)
    now = r_clock[e, r]
    over = 0
    m = 0
    while m < m_max and now < until:
        due = 0
        if m == next_due:
            due, next_due = _blocks_due(kv_tokens, run_list, e, r, n, bs, m)
            if due > free_blocks[e, r]:
                break
            free_blocks[e, r] -= due
        dt = _decode_step_time(c, d, float(kv_sum + n * (m + 1)), float(kv_max + 1 + m))
        t_end = now + dt
        gap = t_end - now
        _push_gaps(gap_heap, counters, e, gap, n)
        if gap > eng.slo_tpot:
            over += 1
        gap_log[e, m] = np.float32(gap)
        accum[e, A_BUSY_S] += dt
        accum[e, A_KV_BLOCK_S] += (eng.capacity_blocks - free_blocks[e, r]) * dt
        accum[e, A_LAST_ITER_S] = dt
        if gap > 0.0:
            accum[e, A_GAP_EMA] += EMA * (gap - accum[e, A_GAP_EMA])
        accum[e, A_RECOMPUTE_EMA] *= 1.0 - EMA
        r_clock[e, r] = t_end
        busy[e, r] += dt
        now = t_end
        m += 1
    if m > 0:
        _decode_run_end(st, wl, eng, e, r, m, over, now)
    return m


@nb.njit(cache=True, inline="always")
def _decode_run_end(st, wl, eng, e, r, m, over, now):
    """Bring the records of replica ``r``'s decoders up to date after a decode run of ``m``
    iterations ending at ``now``, ``over`` of them with a gap over the TBT SLO (``decode_run``)."""
    n = st.n_running[e, r]
    w = st.window[e]
    scale = st.time_scale[e]
    top_gaps, gap_log, missed, counters = st.top_gaps, st.gap_log, st.missed, st.counters
    # The run's k largest gaps, descending, in gap_log[e, GAP_LOG:]: a request's top-T list after all m gaps
    # is the top T of its list and these (a gap below k larger ones of the run cannot enter a list of
    # k <= T), and inserted largest first, the first that does not enter ends its inserts (every later
    # one is no larger and the list's least only grows). One pass over the run instead of one per request.
    T = top_gaps.shape[3]
    k = min(m, T)
    for t in range(k):
        gap_log[e, GAP_LOG + t] = -np.inf
    for j in range(m - 1, -1, -1):  # newest first (the largest, as a run's contexts grow)
        g = gap_log[e, j]
        if g > gap_log[e, GAP_LOG + k - 1]:
            t = k - 1
            while t > 0 and gap_log[e, GAP_LOG + t - 1] < g:
                gap_log[e, GAP_LOG + t] = gap_log[e, GAP_LOG + t - 1]
                t -= 1
            gap_log[e, GAP_LOG + t] = g
    for i in range(n):
        s = st.run_list[e, r, i]
        q = st.req[e, r, s]
        out_q = wl.output[w, q]
        st.kv_tokens[e, r, s] += m
        st.generated[e, r, s] += m
        st.blocks[e, r, s] = ceil_div(st.kv_tokens[e, r, s], eng.block_size)
        st.last_tok_t[e, r, s] = now
        st.gaps_over[e, r, s] += over
        if eng.slo_metric == SLO_P99_TBT:
            if over > 0 and st.gaps_over[e, r, s] > p99_allowed_over(out_q - 1):
                mark_missed(missed, counters, e, r, s)
        elif not missed[e, r, s] and tpot_late(now, wl.arrival_s[w, q] * scale + st.ttft[e, q], out_q, eng.slo_tpot):
            mark_missed(missed, counters, e, r, s)
        for t in range(k):
            g = gap_log[e, GAP_LOG + t]
            if g <= top_gaps[e, r, s, T - 1]:
                break
            insert_top_gap(top_gaps, e, r, s, g)
    counters[e, C_DECODE_TOKENS] += n * m
    counters[e, C_ITERATIONS] += m


@nb.njit(cache=True)
def run_iteration(st, wl, eng, e, r, admit_max, budget, defer, order, now, until=None, busy=None, ema=None,
                  late=False):
    """Schedule and run one iteration of replica ``r`` of env ``e`` starting at ``now``.

    ``eng.prefill_first`` selects the scheduler (see the module docstring): False, decodes (1) then
    prefill chunks (2, 3) in one batch; True, prefill chunks (2, 3) first and decodes (1) only when
    no prefill could be scheduled, whole prompts unless ``eng.chunked_prefill``. One copy of each
    step in one loop of two rounds keeps the kernel as fast as a straight sequence.
    Returns the iteration's duration in seconds; 0.0 when nothing could be scheduled.

    With ``until`` (s) and ``busy`` (float64 [E, R]): the replica's iterations one after another, each
    starting where the last ended (the first at ``st.r_clock[e, r]``; ``now`` is then not used), while
    the replica's clock is before ``until`` and it has queued or running requests; each iteration's
    duration is added to ``busy[e, r]``. An iteration that schedules nothing (preemption only, 0 s) is
    followed by one that admits; a second in a row raises ``RuntimeError``; with ``admit_max`` 0 the
    replica instead idles to ``until``. Returns the last iteration's duration (0.0 if none ran). The
    same results as calling it once per iteration, several times faster: a loop around a call (or an
    inlined helper) taking the state tuple pays an atomic reference-count update per member array on
    every iteration (half of Routing-v0's time at ~200 iterations per routed request; issue 16).
    Without ``until`` numba compiles the single iteration alone (the ``until is None`` branches are
    pruned at compile time).

    With ``until``, ``busy`` and ``ema`` (float64 [E, R]): every replica of env ``e`` in order (``r`` is
    not used), each as above, the core's one recent-TTFT average per env (``st.accum[e, A_TTFT_EMA]``)
    standing in for the replica's own ``ema[e, r]`` while that replica runs (set from it before, written
    back after); with ``late`` also, after each replica, ``mark_late_queued`` at ``until``. The same
    results as one call per replica, without ``R - 1`` calls' reference-count updates of the state
    tuple's ~50 arrays (issue 16: Routing-v0's step made 8 such calls per env).
    """
    # The arrays of the per-request loops, taken out of the tuples once per call: reading a field of the
    # state tuple inside a loop paid an atomic reference-count increment and decrement each time (perf:
    # around every token's top-gap insertion and last-token stamp; issue 16). The helpers that take ``st``
    # see the same arrays.
    accum, counters, r_clock = st.accum, st.counters, st.r_clock
    n_running, n_queued, free_blocks = st.n_running, st.n_queued, st.free_blocks
    run_list, status, req, sched = st.run_list, st.status, st.req, st.sched
    kv_tokens, target, blocks, generated = st.kv_tokens, st.target, st.blocks, st.generated
    last_tok_t, top_gaps, gaps_over, missed = st.last_tok_t, st.top_gaps, st.gaps_over, st.missed
    gap_heap, req_ttft = st.gap_heap, st.ttft
    arrival_s, output = wl.arrival_s, wl.output
    dt = 0.0
    r0 = r
    r1 = r + 1
    if ema is not None:  # every replica of env e, in order
        r0 = 0
        r1 = n_queued.shape[1]
    for r in range(r0, r1):
        stuck = 0
        if ema is not None:
            if r_clock[e, r] < until and (n_queued[e, r] != 0 or n_running[e, r] != 0):
                accum[e, A_TTFT_EMA] = ema[e, r]
            else:
                if late and n_queued[e, r] > 0:
                    mark_late_queued_inline(st, wl, eng, e, r, until)
                continue
        while True:  # once without until
            if until is not None:
                if not (r_clock[e, r] < until and (n_queued[e, r] != 0 or n_running[e, r] != 0)):
                    break
                # (the test of n_queued spares the call where it cannot run: with reference counting on, as in the
                # teacher's kernels, a call taking the state tuple costs an update per member array)
                if n_queued[e, r] == 0 and decode_run(st, wl, eng, e, r, budget, until, busy) > 0:
                    dt = accum[e, A_LAST_ITER_S]
                    continue
                now = r_clock[e, r]
            bs = eng.block_size
            w = st.window[e]
            left = budget
            p_tokens = 0.0
            pairs = 0.0
            d_seqs = 0.0
            d_kv = 0.0
            d_long = 0.0  # longest decode context (the straggler term of engine profiles)
            p_long = 0.0  # kv + chunk of the prefill chunk deepest into its prompt (prefill straggler)
            short = False  # a request could not grow: KV memory ran out this iteration
            pf = eng.prefill_first
            whole = pf and not eng.chunked_prefill  # vLLM V0 without chunked prefill: prompts whole or not at all

            # Round 0 / 1: mixed (pf False): decodes, then prefills; prefill-first: prefills, then decodes only
            # if no prefill was scheduled (vLLM V0 Scheduler._schedule_default: "Don't schedule decodes if
            # prefills are scheduled"; SGLang Scheduler.get_next_batch_to_run: "Run prefill first if possible").
            for rnd in range(2):
                if (rnd == 0) != pf and not (pf and p_tokens > 0.0):
                    # 1. Decodes, oldest first.
                    i = 0
                    while i < n_running[e, r] and left > 0:
                        s = run_list[e, r, i]
                        kv = kv_tokens[e, r, s]
                        if kv < target[e, r, s]:
                            i += 1
                            continue
                        need = ceil_div(kv + 1, bs) - blocks[e, r, s]
                        if need > free_blocks[e, r]:
                            short = True
                            if defer and i > 0:
                                i += 1
                                continue
                            while need > free_blocks[e, r] and run_list[e, r, n_running[e, r] - 1] != s:
                                preempt_newest(st, wl, e, r)
                            if need > free_blocks[e, r]:
                                preempt_newest(st, wl, e, r)  # s itself
                                break
                        blocks[e, r, s] += need
                        free_blocks[e, r] -= need
                        sched[e, r, s] = -1
                        left -= 1
                        d_seqs += 1.0
                        d_kv += kv + 1
                        d_long = max(d_long, kv + 1.0)
                        i += 1
                if (rnd == 0) == pf:
                    # 2. Ongoing prefills, chunked, limited by free blocks.
                    for i in range(n_running[e, r]):
                        if left <= 0:
                            break
                        s = run_list[e, r, i]
                        kv = kv_tokens[e, r, s]
                        if kv >= target[e, r, s]:
                            continue
                        chunk = min(target[e, r, s] - kv, left)
                        room = (blocks[e, r, s] + free_blocks[e, r]) * bs - kv
                        chunk = min(chunk, room)
                        if chunk <= 0:
                            continue
                        need = max(ceil_div(kv + chunk, bs) - blocks[e, r, s], 0)
                        blocks[e, r, s] += need
                        free_blocks[e, r] -= need
                        sched[e, r, s] = chunk
                        left -= chunk
                        p_tokens += chunk
                        pairs += chunk * (kv + (chunk + 1) / 2.0)
                        p_long = max(p_long, kv + chunk + 0.0)
                    # 3. New requests, in the chosen order, while budget, blocks and batch slots allow; none
                    # in an iteration that ran short of KV (vLLM V1 schedules waiting requests only when it
                    # preempted nothing).
                    admitted = 0
                    while (
                        not short
                        and admitted < admit_max
                        and left > 0
                        and n_queued[e, r] > 0
                        and n_running[e, r] < eng.max_seqs
                    ):
                        s = pick_queued_inline(st, wl, eng, e, r, order, now)
                        q = req[e, r, s]
                        tgt = target[e, r, s]
                        cached_blocks = 0
                        if eng.cache_on:
                            n_chain = wl.chain_len[w, q]
                            cached_blocks = prefix.match_length(st.pc_key, st.pc_table, e, r, wl.chain_ids[w, q],
                                                                n_chain)
                        cached = min(cached_blocks * eng.chain_block_tokens, tgt - 1)
                        if whole and tgt - cached > left:
                            break  # vLLM V0 _schedule_prefills: the prompt exceeds the remaining budget; next batch
                        chunk = min(tgt - cached, left)
                        need = ceil_div(cached + chunk, bs)
                        if need > free_blocks[e, r]:
                            break  # head-of-line: vLLM stops admitting when the next request does not fit
                        if eng.cache_on:
                            prefix.touch(st.pc_key, st.pc_last, st.pc_table, e, r, wl.chain_ids[w, q], cached_blocks,
                                         now)
                            counters[e, C_CACHE_HIT_BLOCKS] += cached_blocks
                            counters[e, C_CACHE_LOOKUP_BLOCKS] += wl.chain_len[w, q]
                        counters[e, C_CACHED_TOKENS] += cached
                        counters[e, C_PROMPT_TOKENS] += tgt
                        status[e, r, s] = RUNNING
                        n_queued[e, r] -= 1
                        run_list[e, r, n_running[e, r]] = s
                        n_running[e, r] += 1
                        kv_tokens[e, r, s] = cached
                        blocks[e, r, s] = need
                        free_blocks[e, r] -= need
                        sched[e, r, s] = chunk
                        left -= chunk
                        p_tokens += chunk
                        pairs += chunk * (cached + (chunk + 1) / 2.0)
                        p_long = max(p_long, cached + chunk + 0.0)
                        admitted += 1

            if p_tokens == 0.0 and d_seqs == 0.0:
                if until is None:
                    return 0.0
                else:
                    dt = 0.0
                    if admit_max == 0:  # told to admit nothing with nothing running: idle until then
                        r_clock[e, r] = until
                        break
                    stuck += 1  # a preemption-only iteration; the next one admits
                    if stuck > 1:
                        raise RuntimeError("run_iteration: a replica with work could not schedule it")
                    continue
            dt = step_time_inline(eng.coeffs, p_tokens, pairs, d_seqs, d_kv, d_long, p_long)
            t_end = now + dt

            # Results of the iteration, then drop finished requests from the running list.
            max_gap = 0.0
            keep = 0
            n = n_running[e, r]
            p99_check = eng.slo_metric == SLO_P99_TBT
            scale = st.time_scale[e]
            for i in range(n):
                s = run_list[e, r, i]
                work = sched[e, r, s]
                sched[e, r, s] = 0
                q = req[e, r, s]
                out_q = output[w, q]
                allowed = p99_allowed_over(out_q - 1)
                tok = False  # a token after the first: record its gap
                if work == -1:
                    kv_tokens[e, r, s] += 1
                    tok = True
                elif work > 0:
                    kv_tokens[e, r, s] += work
                    if kv_tokens[e, r, s] == target[e, r, s]:
                        if generated[e, r, s] == 0:
                            ttft = t_end - arrival_s[w, q] * scale
                            req_ttft[e, q] = ttft
                            if ttft > eng.slo_ttft:
                                mark_missed(missed, counters, e, r, s)
                            accum[e, A_TTFT_EMA] += EMA * (ttft - accum[e, A_TTFT_EMA])
                            generated[e, r, s] += 1
                            last_tok_t[e, r, s] = t_end
                        else:
                            tok = True
                if tok:
                    # The gap's records, written here against the state's fields: a helper taking the arrays
                    # as arguments paid a reference-count update (atomic) per array per token (issue 17).
                    generated[e, r, s] += 1
                    gap = t_end - last_tok_t[e, r, s]
                    _push_gap(gap_heap, counters, e, gap)
                    if gap > eng.slo_tpot:
                        gaps_over[e, r, s] += 1
                        if p99_check and gaps_over[e, r, s] > allowed:
                            mark_missed(missed, counters, e, r, s)
                    insert_top_gap(top_gaps, e, r, s, np.float32(gap))
                    if not p99_check and tpot_late(t_end, arrival_s[w, q] * scale + req_ttft[e, q], out_q,
                                                   eng.slo_tpot):
                        mark_missed(missed, counters, e, r, s)
                    max_gap = max(max_gap, gap)
                    last_tok_t[e, r, s] = t_end
                if generated[e, r, s] >= out_q:
                    _finish_inline(st, wl, eng, e, r, s, t_end)
                else:
                    run_list[e, r, keep] = s
                    keep += 1
            n_running[e, r] = keep

            used = eng.capacity_blocks - free_blocks[e, r]
            counters[e, C_PREFILL_TOKENS] += np.int64(p_tokens)
            counters[e, C_DECODE_TOKENS] += np.int64(d_seqs)
            counters[e, C_ITERATIONS] += 1
            accum[e, A_BUSY_S] += dt
            accum[e, A_KV_BLOCK_S] += used * dt
            accum[e, A_LAST_ITER_S] = dt
            if max_gap > 0.0:
                accum[e, A_GAP_EMA] += EMA * (max_gap - accum[e, A_GAP_EMA])
            accum[e, A_RECOMPUTE_EMA] *= 1.0 - EMA
            r_clock[e, r] = t_end
            if until is None:
                return dt
            else:
                stuck = 0
                busy[e, r] += dt
        if ema is not None:
            ema[e, r] = accum[e, A_TTFT_EMA]
            if late and n_queued[e, r] > 0:
                mark_late_queued_inline(st, wl, eng, e, r, until)
    return dt


# The same functions compiled for inlining (numba IR inlining, ``inline="always"``) into the loops
# that call them many times per step (Routing-v0 runs ~200 iterations per routed request): a
# compiled call that takes the state tuple pays a reference-count update per member array.
run_iteration_inline = nb.njit(inline="always")(run_iteration.py_func)
mark_late_queued_inline = nb.njit(inline="always")(mark_late_queued.py_func)
_finish_inline = nb.njit(inline="always")(_finish.py_func)
pick_queued_inline = nb.njit(inline="always")(pick_queued.py_func)
enqueue_inline = nb.njit(inline="always")(enqueue.py_func)


@nb.njit(cache=True)
def reset_replica(st, eng, e, r):
    st.status[e, r, :] = FREE
    st.sched[e, r, :] = 0
    st.n_queued[e, r] = 0
    st.n_running[e, r] = 0
    st.next_seq[e, r] = 0
    st.free_blocks[e, r] = eng.capacity_blocks
    st.r_clock[e, r] = 0.0
    prefix.clear(st, e, r)


@nb.njit(cache=True)
def reset_env_state(st, e, window, time_scale):
    st.window[e] = window
    st.time_scale[e] = time_scale
    st.next_arrival[e] = 0
    st.clock[e] = 0.0
    st.counters[e, :] = 0
    st.accum[e, :] = 0.0
    st.out_hist[e, :] = 0.0
    st.fate[e, :] = 0
    st.ttft[e, :] = np.nan
    st.e2e[e, :] = np.nan
    st.tbt_p99[e, :] = np.nan
    st.tpot[e, :] = np.nan
    st.slo_met[e, :] = False
