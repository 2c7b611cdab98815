"""Numba kernels of Routing-v0: one call routes the pending request of every env of the batch.

Between two decisions every replica runs its own engine iterations (vLLM FCFS, chunked prefill
under the token budget, ``envs.core.replica.run_iteration``) up to the next arrival; an
iteration that starts before the arrival may end after it (it is in flight when the router
decides), so replica clocks can run ahead of the env clock, never behind an arrival they serve.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import prefix
from envs.core.replica import (
    ORDER_FCFS,
    enqueue,
    mark_late_queued_inline,
    next_queued,
    reset_env_state,
    reset_replica,
    run_iteration_inline,
)
from envs.core.state import A_TTFT_EMA, C_SLO_MET, C_SLO_MISSED

# Observation layout: REQUEST_FEATURES, then REPLICA_FEATURES for each replica (replica-major).
REQUEST_FEATURES = (
    "prompt",  # prompt tokens / TOKEN_SCALE
    "pred_bucket",  # noisy predicted output-length bucket / (buckets - 1)
    "prefix_key",  # hash of the request's first hash_blocks prefix blocks, in [0, 1) (2**-24 steps)
    "arrived",  # share of the episode's requests routed so far
    "report_age",  # age of the replicas' load reports / TTFT SLO (0 when reports are fresh)
)
REPLICA_FEATURES = (
    "up",  # 1 if the replica serves (Routing-v0: always; the multi-agent cluster scales replicas)
    "queued",  # queued requests / COUNT_SCALE               (reported: stale when stale_s > 0)
    "running",  # running requests / COUNT_SCALE             (reported)
    "outstanding",  # prefill tokens not yet computed, queued + running / TOKEN_SCALE (reported)
    "kv_use",  # used KV blocks / capacity                   (reported)
    "ttft_recent",  # the replica's recent TTFT / TTFT SLO   (reported)
    "prefix_hit",  # share of this prompt cached there (router-side: exact, as with KV events)
    "cache_fill",  # prefix-cache entries in use / entries     (router-side)
    "est_ttft",  # (outstanding + uncached prompt) x prefill s/token / TTFT SLO
    "sent",  # requests routed there since its last report / COUNT_SCALE
)
G = len(REQUEST_FEATURES)
F = len(REPLICA_FEATURES)
COUNT_SCALE = 64.0
TOKEN_SCALE = 65536.0
N_REPORTED = 5  # queued, running, outstanding, kv_use, ttft_recent
HASH_BITS = 24

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
def outstanding_tokens(st, e, r):
    """Prefill tokens not yet computed for the replica's queued and running requests."""
    tot = 0
    for i in range(st.n_running[e, r]):
        s = st.run_list[e, r, i]
        tot += max(st.target[e, r, s] - st.kv_tokens[e, r, s], 0)
    s = -1
    for _ in range(st.n_queued[e, r]):
        s = next_queued(st.status, e, r, s + 1)
        tot += st.target[e, r, s] - st.kv_tokens[e, r, s]
    return tot


@nb.njit(cache=True)
def advance_replica(st, wl, eng, e, r, until, admit, budget, defer, order, ttft_ema, busy):
    """Run replica ``r``'s iterations that start before ``until`` under the scheduling knobs of
    ``run_iteration`` (Routing-v0: vLLM's). The core keeps one recent-TTFT average per env; it
    is swapped with the replica's own around each iteration."""
    stuck = 0
    while st.r_clock[e, r] < until and not _is_idle(st.n_queued, st.n_running, e, r):
        st.accum[e, A_TTFT_EMA] = ttft_ema[e, r]
        dt = run_iteration_inline(st, wl, eng, e, r, admit, budget, defer, order, st.r_clock[e, r])
        ttft_ema[e, r] = st.accum[e, A_TTFT_EMA]
        if dt == 0.0:
            if admit == 0:  # told to admit nothing with nothing running: idle to the next decision
                st.r_clock[e, r] = until
                break
            stuck += 1  # a preemption-only iteration; the next one admits
            if stuck > 1:
                raise RuntimeError("routing: a replica with work could not schedule it")
        else:
            stuck = 0
            busy[e, r] += dt


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
              sec_per_tok):
    """Observation and mask of a router of env ``e`` for request ``i`` (``snap``/``snap_t``/
    ``sent``: that router's view of the load reports)."""
    w = st.window[e]
    N = wl.n_requests[w]
    R = st.n_queued.shape[1]
    S = st.status.shape[2]
    now = st.clock[e]
    i = min(i, N - 1)
    prompt = wl.prompt[w, i]
    if stale_s <= 0.0 or now - snap_t[e] >= stale_s:
        cap = float(eng.capacity_blocks)
        for r in range(R):
            snap[e, r, 0] = st.n_queued[e, r] / COUNT_SCALE
            snap[e, r, 1] = st.n_running[e, r] / COUNT_SCALE
            snap[e, r, 2] = outstanding_tokens(st, e, r) / TOKEN_SCALE
            snap[e, r, 3] = 1.0 - st.free_blocks[e, r] / cap
            snap[e, r, 4] = ttft_ema[e, r] / eng.slo_ttft
            sent[e, r] = 0
        snap_t[e] = now
    o = obs[e]
    o[0] = prompt / TOKEN_SCALE
    o[1] = wl.pred_bucket[w, i] / 7.0
    o[2] = prefix_key(wl, w, i, hash_blocks) / float(1 << HASH_BITS)
    o[3] = i / N
    o[4] = (now - snap_t[e]) / eng.slo_ttft
    n_chain = wl.chain_len[w, i]
    chain = wl.chain_ids[w, i]
    C = st.pc_key.shape[2]
    any_ok = False
    for r in range(R):
        base = G + r * F
        cached = 0
        if eng.cache_on:
            blocks = prefix.match_length(st, e, r, chain, n_chain)
            cached = min(blocks * eng.chain_block_tokens, prompt - 1)
        o[base + 0] = up[e, r]
        for k in range(N_REPORTED):
            o[base + 1 + k] = snap[e, r, k]
        o[base + 6] = cached / prompt
        o[base + 7] = st.pc_count[e, r] / C if eng.cache_on else 0.0
        work = snap[e, r, 2] * TOKEN_SCALE + prompt - cached
        o[base + 8] = work * sec_per_tok / eng.slo_ttft
        o[base + 9] = sent[e, r] / COUNT_SCALE
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
def step_all(st, wl, eng, actions, up, budget, drain_s, stale_s, hash_blocks, sec_per_tok,
             ttft_ema, busy, snap, snap_t, sent, obs, mask, reward, terminated, truncated):
    R = st.n_queued.shape[1]
    for e in range(actions.shape[0]):
        w = st.window[e]
        N = wl.n_requests[w]
        scale = st.time_scale[e]
        met0 = st.counters[e, C_SLO_MET]
        miss0 = st.counters[e, C_SLO_MISSED]
        t = wl.arrival_s[w, st.next_arrival[e]] * scale
        route_one(st, wl, eng, e, actions[e], t, sent)
        if st.next_arrival[e] < N:
            t_next = wl.arrival_s[w, st.next_arrival[e]] * scale
            for r in range(R):
                advance_replica(st, wl, eng, e, r, t_next, eng.max_seqs, budget, False, ORDER_FCFS,
                                ttft_ema, busy)
                mark_late_queued_inline(st, wl, eng, e, r, t_next)
            st.clock[e] = t_next
            terminated[e] = False
            truncated[e] = False
        else:
            # The last request: drain every replica (up to drain_s after it arrived).
            end = t
            empty = True
            for r in range(R):
                advance_replica(st, wl, eng, e, r, t + drain_s, eng.max_seqs, budget, False, ORDER_FCFS,
                                ttft_ema, busy)
                end = max(end, st.r_clock[e, r])
                empty = empty and _is_idle(st.n_queued, st.n_running, e, r)
            st.clock[e] = end
            terminated[e] = empty
            truncated[e] = not empty
        reward[e] = (st.counters[e, C_SLO_MET] - met0) - (st.counters[e, C_SLO_MISSED] - miss0)
        write_obs(st, wl, eng, e, st.next_arrival[e], obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s,
                  hash_blocks, sec_per_tok)


@nb.njit(cache=True)
def reset_all(st, wl, eng, envs, windows, time_scales, up, stale_s, hash_blocks, sec_per_tok,
              ttft_ema, busy, snap, snap_t, sent, obs, mask):
    R = st.n_queued.shape[1]
    for j in range(envs.shape[0]):
        e = envs[j]
        reset_env_state(st, e, windows[j], time_scales[j])
        t0 = wl.arrival_s[windows[j], 0] * time_scales[j]
        st.clock[e] = t0
        for r in range(R):
            reset_replica(st, eng, e, r)
            st.r_clock[e, r] = t0
            ttft_ema[e, r] = 0.0
            busy[e, r] = 0.0
            sent[e, r] = 0
        snap_t[e] = -np.inf
        write_obs(st, wl, eng, e, st.next_arrival[e], obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s,
                  hash_blocks, sec_per_tok)
