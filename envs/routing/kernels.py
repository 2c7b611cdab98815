"""Numba kernels of Routing-v0: one call routes the pending request of every env of the batch.

Between two decisions every replica runs its own engine iterations (vLLM FCFS, chunked prefill
under the token budget, ``envs.core.replica.run_iteration``) up to the next arrival; an
iteration that starts before the arrival may end after it (it is in flight when the router
decides), so replica clocks can run ahead of the env clock, never behind an arrival they serve.

Observation quantities are relative to capacity and the SLO (so that a policy transfers across
workload families, load levels and SLO tiers): work in units of the TTFT SLO (prefill seconds /
TTFT SLO), request counts in units of what one replica serves in one TTFT SLO (``count_unit`` =
the replica's capacity in requests/s without prefix reuse x TTFT SLO), the arrival rate as a
fraction of the cluster's capacity.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import prefix
from envs.core.capacity import count_unit
from envs.core.prefetch import prefetch
from envs.core.replica import (
    ORDER_FCFS,
    enqueue,
    next_queued,
    reset_env_state,
    reset_replica,
    run_iteration,
)
from envs.core.state import A_TTFT_EMA, C_SLO_MET, C_SLO_MISSED, DROPPED, FAILED, REJECTED

# Observation layout: REQUEST_FEATURES, then REPLICA_FEATURES for each replica (replica-major).
# "SLO" = the TTFT SLO; "unit" = count_unit, requests one replica serves in one TTFT SLO.
# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "the observation of REQUEST_FEATURES then REPLICA_FEATURES per replica as its zoo checkpoint "
        "(6439b56) was trained on"
    ),
}
OBS_VERSION = 1
REQUEST_FEATURES = (
    "prompt",  # prefill time of the prompt alone (prompt tokens x prefill s/token) / SLO
    "pred_bucket",  # noisy predicted output-length bucket / (buckets - 1)
    "prefix_key",  # hash of the request's first hash_blocks prefix blocks, in [0, 1) (2**-24 steps)
    "arrived",  # share of the episode's requests routed so far
    "report_age",  # age of the replicas' load reports / SLO (0 when reports are fresh)
    "load",  # arrival rate over the last LOAD_ARRIVALS arrivals / (R x replica capacity)
    "count_unit",  # replica capacity (requests/s, no prefix reuse) x SLO / COUNT_SCALE
)
REPLICA_FEATURES = (
    "up",  # 1 if the replica serves (Routing-v0: always; the multi-agent cluster scales replicas)
    "queued",  # queued requests / unit                       (reported: stale when stale_s > 0)
    "running",  # running requests / unit                     (reported)
    "outstanding",  # prefill tokens not yet computed, queued + running, x prefill s/token / SLO (reported)
    "kv_use",  # used KV blocks / capacity                    (reported)
    "ttft_recent",  # the replica's recent TTFT / SLO         (reported)
    "prefix_hit",  # share of this prompt cached there (router-side: exact, as with KV events)
    "cache_fill",  # prefix-cache entries in use / entries     (router-side)
    "est_ttft",  # (outstanding + uncached prompt) x prefill s/token / SLO
    "sent",  # requests routed there since its last report / unit
)
G = len(REQUEST_FEATURES)
F = len(REPLICA_FEATURES)
COUNT_SCALE = 64.0  # count_unit's scale (heuristics recover request counts: count x unit)
N_REPORTED = 5  # queued, running, outstanding, kv_use, ttft_recent
HASH_BITS = 24
LOAD_ARRIVALS = 16  # arrivals the "load" feature's rate spans
MIN_RATE_SPAN_S = 1e-3  # the rate's time span is at least this (a burst of simultaneous arrivals)


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@nb.njit(cache=True, inline="always")
def splitmix64(x):
    """SplitMix64 finalizer (Steele et al., 2014): a well-mixed 64-bit hash of ``x``."""
    z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, inline="always")
def prefix_key(wl, w, i, hash_blocks):
    """Integer key in [0, 2**24) of request ``i``'s first ``hash_blocks`` prefix blocks (a chain
    id already names its whole prefix); requests without chains hash their own index."""
    n = wl.chain_len[w, i]
    if n > 0:
        raw = wl.chain_ids[w, i, min(hash_blocks, n) - 1]
    else:
        raw = np.int64(w) * np.int64(1 << 32) + i + np.int64(1 << 62)
    return np.int64(splitmix64(raw) >> np.uint64(64 - HASH_BITS))


@nb.njit(cache=True, inline="always")
def _is_idle(n_queued, n_running, e, r):
    return n_queued[e, r] == 0 and n_running[e, r] == 0


@nb.njit(cache=True)
def outstanding_tokens(n_running, run_list, n_queued, status, target, kv_tokens, e, r):
    """Prefill tokens not yet computed for the replica's queued and running requests (the state's
    arrays of those names: a call taking the whole state tuple paid a reference-count update per
    member array, issue 16)."""
    tot = 0
    for i in range(n_running[e, r]):
        s = run_list[e, r, i]
        tot += max(target[e, r, s] - kv_tokens[e, r, s], 0)
    s = -1
    for _ in range(n_queued[e, r]):
        s = next_queued(status, e, r, s + 1)
        tot += target[e, r, s] - kv_tokens[e, r, s]
    return tot


@nb.njit(cache=True)
def advance_replica(st, wl, eng, e, r, until, admit, budget, defer, order, ttft_ema, busy):
    """Run replica ``r``'s iterations that start before ``until`` under the scheduling knobs of
    ``run_iteration`` (Routing-v0: vLLM's), adding their durations to ``busy[e, r]``. The core keeps
    one recent-TTFT average per env; the replica's own (``ttft_ema[e, r]``) stands in for it while
    the replica runs (only its iterations change it). One call of the core's iteration loop
    (``run_iteration`` with ``until``), not a call per iteration (issue 16: a call or an inlined
    helper taking the state tuple paid a reference-count update per member array per iteration)."""
    if st.r_clock[e, r] < until and not _is_idle(st.n_queued, st.n_running, e, r):
        st.accum[e, A_TTFT_EMA] = ttft_ema[e, r]
        run_iteration(st, wl, eng, e, r, admit, budget, defer, order, st.r_clock[e, r], until, busy)
        ttft_ema[e, r] = st.accum[e, A_TTFT_EMA]


@nb.njit(cache=True)
def route_one(st, wl, eng, e, r, t, sent):
    """Request ``next_arrival`` arrives at ``t`` and joins replica ``r``'s queue (``sent``: the
    router's count of requests it sent there since the replica's last report)."""
    if _is_idle(st.n_queued, st.n_running, e, r) and st.r_clock[e, r] < t:
        st.r_clock[e, r] = t
    enqueue(st, wl, eng, e, r, st.next_arrival[e])
    st.next_arrival[e] += 1
    sent[e, r] += 1


@nb.njit(cache=True)
def write_obs(st, wl, eng, e, i, obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s, hash_blocks,
              sec_per_tok, cap_rps):
    """Observation and mask of a router of env ``e`` for request ``i`` (``snap``/``snap_t``/
    ``sent``: that router's view of the load reports; ``cap_rps``: one replica's capacity in
    requests/s on the env's workload, the unit of counts and of the load)."""
    w = st.window[e]
    N = wl.n_requests[w]
    R = st.n_queued.shape[1]
    S = st.status.shape[2]
    now = st.clock[e]
    i = min(i, N - 1)
    prompt = wl.prompt[w, i]
    unit = count_unit(cap_rps, eng.slo_ttft)
    work_scale = sec_per_tok / eng.slo_ttft  # prefill tokens -> TTFT SLOs
    if stale_s <= 0.0 or now - snap_t[e] >= stale_s:
        cap = float(eng.capacity_blocks)
        for r in range(R):
            snap[e, r, 0] = st.n_queued[e, r] / unit
            snap[e, r, 1] = st.n_running[e, r] / unit
            idle = _is_idle(st.n_queued, st.n_running, e, r)
            snap[e, r, 2] = (0 if idle else outstanding_tokens(st.n_running, st.run_list, st.n_queued, st.status,
                                                                  st.target, st.kv_tokens, e, r)) * work_scale
            snap[e, r, 3] = 1.0 - st.free_blocks[e, r] / cap
            snap[e, r, 4] = ttft_ema[e, r] / eng.slo_ttft
            sent[e, r] = 0
        snap_t[e] = now
    o = obs[e]
    o[0] = prompt * work_scale
    o[1] = wl.pred_bucket[w, i] / 7.0
    o[2] = prefix_key(wl, w, i, hash_blocks) / float(1 << HASH_BITS)
    o[3] = i / N
    o[4] = (now - snap_t[e]) / eng.slo_ttft
    k = min(i, LOAD_ARRIVALS)
    if k > 0:
        span = max((wl.arrival_s[w, i] - wl.arrival_s[w, i - k]) * st.time_scale[e], MIN_RATE_SPAN_S)
        o[5] = k / span / (R * cap_rps)
    else:
        o[5] = 0.0
    o[6] = unit / COUNT_SCALE
    n_chain = wl.chain_len[w, i]
    chain = wl.chain_ids[w, i]
    C = st.pc_key.shape[2]
    if eng.cache_on and n_chain > 0:  # the first probes of every replica's lookup below, hinted at once
        for r in range(R):
            if st.pc_count[e, r] > 0:
                prefix.prefetch_chain(st.pc_key, st.pc_last, st.pc_table, e, r, chain, min(n_chain, 2), False)
    any_ok = False
    for r in range(R):
        base = G + r * F
        cached = 0
        if eng.cache_on and n_chain > 0 and st.pc_count[e, r] > 0:  # an empty cache matches nothing
            blocks = prefix.match_length(st.pc_key, st.pc_table, e, r, chain, n_chain)
            cached = min(blocks * eng.chain_block_tokens, prompt - 1)
        o[base + 0] = up[e, r]
        for k in range(N_REPORTED):
            o[base + 1 + k] = snap[e, r, k]
        o[base + 6] = cached / prompt
        o[base + 7] = st.pc_count[e, r] / C if eng.cache_on else 0.0
        o[base + 8] = snap[e, r, 2] + (prompt - cached) * work_scale
        o[base + 9] = sent[e, r] / unit
        ok = up[e, r] > 0 and st.n_queued[e, r] + st.n_running[e, r] < S
        mask[e, r] = ok
        any_ok = any_ok or ok
    if not any_ok:
        # Every replica is full or down: the request is dropped at whichever up replica it goes
        # to (counted); with none up, any index is legal (and drops it).
        any_up = False
        for r in range(R):
            any_up = any_up or up[e, r] > 0
        for r in range(R):
            mask[e, r] = up[e, r] > 0 or not any_up


@nb.njit(cache=True)
def ttft_excess(st, wl, e, now, bound_s, charged, first_open):
    """Seconds of TTFT beyond ``bound_s`` that env ``e``'s arrived requests accrued since the last
    call, up to ``now`` (s): a request with a first token counts TTFT - bound, one still waiting
    its wait so far - bound, each at most once (``charged`` [E, N] float64 holds what each request
    was charged, ``first_open`` [E] the first request not yet settled: these two are the kernel's
    state, zeroed at reset). Dropped, failed and rejected requests are never charged (a drop is an
    SLO miss already)."""
    w = st.window[e]
    scale = st.time_scale[e]
    total = 0.0
    settled = True
    for q in range(first_open[e], st.next_arrival[e]):
        f = st.fate[e, q]
        waiting = False
        if f != DROPPED and f != FAILED and f != REJECTED:
            t = st.ttft[e, q]
            if t == t:  # first token produced: TTFT final
                x = max(t - bound_s, 0.0)
            else:
                x = max(now - wl.arrival_s[w, q] * scale - bound_s, 0.0)
                waiting = True
            if x > charged[e, q]:
                total += x - charged[e, q]
                charged[e, q] = x
        if settled and not waiting:
            first_open[e] = q + 1
        else:
            settled = False
    return total


@nb.njit(cache=True, inline="always")
def _prefetch_lists(st, e):
    """Cache hints for env ``e``'s per-replica counts and the first line of each replica's running
    list, which :func:`_prefetch_slots` reads one env later (``envs.core.prefetch``; changes no value)."""
    R = st.n_queued.shape[1]
    prefetch(st.n_running, (e, 0))
    prefetch(st.n_queued, (e, 0))
    for r in range(R):
        prefetch(st.run_list, (e, r, 0))


@nb.njit(cache=True, inline="always")
def _prefetch_slots(st, e):
    """Cache hints for what env ``e``'s engine iterations read first: its counters, accumulators,
    the gap heap's root and, per running request, its slot's packed fields (``state.PACKED_SLOT_FIELDS``,
    first and last), last token time, SLO flag and least kept top gap. Each replica's requests lie in
    random slots, one miss after another otherwise: a decode run loads them at its start and updates
    them at its end (issue 16). Called one env ahead; changes no value."""
    R = st.n_queued.shape[1]
    T = st.top_gaps.shape[3]
    prefetch(st.counters, (e, 0))
    prefetch(st.counters, (e, st.counters.shape[1] - 1))
    prefetch(st.accum, (e, 0))
    prefetch(st.gap_heap, (e, 0, 0))  # the count of entries and the root: one 32-byte pair
    prefetch(st.r_clock, (e, 0))
    prefetch(st.free_blocks, (e, 0))
    for r in range(R):
        for i in range(st.n_running[e, r]):
            s = st.run_list[e, r, i]
            prefetch(st.req, (e, r, s))
            prefetch(st.sched, (e, r, s))
            prefetch(st.last_tok_t, (e, r, s))
            prefetch(st.missed, (e, r, s))
            prefetch(st.top_gaps, (e, r, s, T - 1))


# step_all is compiled without numba's reference counting (``_nrt=False``, as KVAdmission's step_all and
# envs/prefix_eviction/kernels.py): it indexes arrays its caller owns and allocates none (numba compiles the
# helpers it calls with the same option, so an allocation anywhere in the call tree would fail to compile).
# With counting on, each per-env call taking the state tuple (route_one, run_iteration, write_obs,
# ttft_excess) paid an atomic incref/decref per member array on entry and exit (issue 16).
JIT_NO_NRT = {"cache": True, "_nrt": False}


@nb.njit(**JIT_NO_NRT)
def step_all(st, wl, eng, actions, up, budget, drain_s, stale_s, hash_blocks, sec_per_tok, cap_rps,
             bound_s, bound_penalty, charged, first_open, ttft_ema, busy, snap, snap_t, sent, obs, mask,
             reward, terminated, truncated):
    """Route every env's pending request by ``actions`` [E] and run the replicas to the next
    arrival (or drain). ``cap_rps`` [E]: one replica's capacity (requests/s) on each env's
    workload; reward = SLO met - SLO missed - ``bound_penalty`` x (TTFT beyond ``bound_s``) /
    ``bound_s`` (see ``ttft_excess``; no tail term when ``bound_penalty`` is 0)."""
    R = st.n_queued.shape[1]
    E = actions.shape[0]
    for e in range(E):
        if e + 2 < E:  # the next envs' rows, hinted while this one steps
            _prefetch_lists(st, e + 2)
        if e + 1 < E:
            _prefetch_slots(st, e + 1)
        w = st.window[e]
        N = wl.n_requests[w]
        scale = st.time_scale[e]
        met0 = st.counters[e, C_SLO_MET]
        miss0 = st.counters[e, C_SLO_MISSED]
        t = wl.arrival_s[w, st.next_arrival[e]] * scale
        route_one(st, wl, eng, e, actions[e], t, sent)
        if st.next_arrival[e] < N:
            t_next = wl.arrival_s[w, st.next_arrival[e]] * scale
            # Every replica to t_next (advance_replica's body for each, then mark_late_queued) in one call:
            # a call taking the state tuple pays a reference-count update per member array on entry and
            # exit (issue 16), once per env instead of once per replica with work.
            run_iteration(st, wl, eng, e, 0, eng.max_seqs, budget, False, ORDER_FCFS, 0.0, t_next, busy, ttft_ema,
                          True)
            st.clock[e] = t_next
            terminated[e] = False
            truncated[e] = False
        else:
            # The last request: drain every replica (up to drain_s after it arrived).
            end = t
            empty = True
            run_iteration(st, wl, eng, e, 0, eng.max_seqs, budget, False, ORDER_FCFS, 0.0, t + drain_s, busy, ttft_ema,
                          False)
            for r in range(R):
                end = max(end, st.r_clock[e, r])
                empty = empty and _is_idle(st.n_queued, st.n_running, e, r)
            st.clock[e] = end
            terminated[e] = empty
            truncated[e] = not empty
        reward[e] = (st.counters[e, C_SLO_MET] - met0) - (st.counters[e, C_SLO_MISSED] - miss0)
        if bound_penalty > 0.0:
            reward[e] -= bound_penalty * ttft_excess(st, wl, e, st.clock[e], bound_s, charged, first_open) / bound_s
        write_obs(st, wl, eng, e, st.next_arrival[e], obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s,
                  hash_blocks, sec_per_tok, cap_rps[e])


@nb.njit(cache=True)
def reset_all(st, wl, eng, envs, windows, time_scales, up, stale_s, hash_blocks, sec_per_tok, cap_rps,
              charged, first_open, ttft_ema, busy, snap, snap_t, sent, obs, mask):
    """Start the episodes of ``envs`` on ``windows`` at ``time_scales`` (``cap_rps`` [E] already
    set for them)."""
    R = st.n_queued.shape[1]
    for j in range(envs.shape[0]):
        e = envs[j]
        reset_env_state(st, e, windows[j], time_scales[j])
        t0 = wl.arrival_s[windows[j], 0] * time_scales[j]
        st.clock[e] = t0
        charged[e, :] = 0.0
        first_open[e] = 0
        for r in range(R):
            reset_replica(st, eng, e, r)
            st.r_clock[e, r] = t0
            ttft_ema[e, r] = 0.0
            busy[e, r] = 0.0
            sent[e, r] = 0
        snap_t[e] = -np.inf
        write_obs(st, wl, eng, e, st.next_arrival[e], obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s,
                  hash_blocks, sec_per_tok, cap_rps[e])
