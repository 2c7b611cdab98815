"""The straightforward kernels that the fast paths of KVAdmission-v0 and Routing-v0 replaced (issue 16),
kept verbatim as the reference that tests/test_kernel_parity.py compares the fast paths with, bit for bit.

* ``kv_write_obs``: KVAdmission-v0's observation as of commit 6d12e3f (``envs/kv_admission/kernels.py``:
  an argsort and allocations per call, the Past-Future peak recomputed K + 1 times).
* ``rt_step_all``: Routing-v0's step as of 6d12e3f (``envs/routing/kernels.py``: every replica of an env
  advanced and every load report recomputed at every decision), with issue 21's changes written the
  plain way: the observation relative to capacity and the SLO, and the TTFT tail-bound charge
  rescanning every arrived request at every decision (the kernel keeps a first-open index).
* ``assert_same_state``: the comparison those tests make of a fast path's cluster state with a reference's.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import prefix
from envs.core import state as S
from envs.core.replica import ORDER_FCFS, ceil_div, enqueue, mark_late_queued, next_queued, run_iteration
from envs.core.state import (
    A_GAP_EMA,
    A_LAST_ITER_S,
    A_RECOMPUTE_EMA,
    A_TTFT_EMA,
    C_SLO_MET,
    C_SLO_MISSED,
    DROPPED,
    FAILED,
    N_HIST_BINS,
    REJECTED,
)
from envs.routing.kernels import COUNT_SCALE, F, G, HASH_BITS, LOAD_ARRIVALS, MIN_RATE_SPAN_S, N_REPORTED, prefix_key


# --- KVAdmission-v0 (envs/kv_admission/kernels.py at 6d12e3f)

@nb.njit(cache=True)
def _hist_tables(hist):
    """Suffix counts and sums of the output-length history (log2 bins, bin b ~ 1.5 * 2**b)."""
    suf_c = np.zeros(N_HIST_BINS + 1)
    suf_s = np.zeros(N_HIST_BINS + 1)
    for b in range(N_HIST_BINS - 1, -1, -1):
        mid = 1.0 if b == 0 else 1.5 * (1 << b)
        suf_c[b] = suf_c[b + 1] + hist[b]
        suf_s[b] = suf_s[b + 1] + hist[b] * mid
    return suf_c, suf_s


@nb.njit(cache=True, inline="always")
def _expected_output(suf_c, suf_s, g):
    """Past-Future's estimate from the history of output lengths: E[L | L > g]."""
    b = 0
    mid = 1.0
    while b < N_HIST_BINS and mid <= g:
        b += 1
        mid = 1.5 * (1 << b)
    if b >= N_HIST_BINS or suf_c[b] <= 0:
        return g + 1.0
    return suf_s[b] / suf_c[b]


@nb.njit(cache=True)
def _peak(lens, rems, n, extra_len, extra_cnt, extra_rem):
    """Peak future KV tokens when each request i grows by rems[i] then leaves (Past-Future).

    ``lens``/``rems`` sorted by ascending remaining length; ``extra_cnt`` more requests of total
    length ``extra_len`` that each have ``extra_rem`` left.
    """
    peak = 0.0
    suf_len = 0.0
    suf_cnt = 0.0
    extra_done = False
    for j in range(n - 1, -1, -1):
        if not extra_done and rems[j] < extra_rem:
            suf_len += extra_len
            suf_cnt += extra_cnt
            extra_done = True
            if extra_cnt > 0:
                peak = max(peak, suf_len + suf_cnt * extra_rem)
        suf_len += lens[j]
        suf_cnt += 1.0
        peak = max(peak, suf_len + suf_cnt * rems[j])
    if not extra_done and extra_cnt > 0:
        suf_len += extra_len
        suf_cnt += extra_cnt
        peak = max(peak, suf_len + suf_cnt * extra_rem)
    return peak


@nb.njit(cache=True)
def kv_write_obs(st, wl, eng, e, K, obs, mask, admit_levels, n_budgets, unit, r=0):
    """Observation and mask of replica ``r`` of env ``e`` (KVAdmission-v0 has one replica; the
    multi-agent cluster's admission controllers use this same layout for each of theirs)."""
    w = st.window[e]
    bs = eng.block_size
    cap = float(eng.capacity_blocks)
    cap_tok = cap * bs
    now = st.clock[e]
    N = wl.n_requests[w]
    arrival = wl.arrival_s[w]
    scale = st.time_scale[e]

    # Running requests: reservation, backlog, Past-Future inputs.
    n_run = st.n_running[e, r]
    lens = np.empty(n_run)
    rems = np.empty(n_run)
    reserve = 0.0
    backlog = 0.0
    decoding = 0
    suf_c, suf_s = _hist_tables(st.out_hist[e])
    for i in range(n_run):
        s = st.run_list[e, r, i]
        q = st.req[e, r, s]
        prompt = wl.prompt[w, q]
        g = st.generated[e, r, s]
        reserve += ceil_div(prompt + eng.max_output, bs)
        kv = st.kv_tokens[e, r, s]
        backlog += st.target[e, r, s] - kv
        if kv >= st.target[e, r, s]:
            decoding += 1
        cond = _expected_output(suf_c, suf_s, g)
        lens[i] = prompt + g
        rems[i] = max(min(cond, eng.max_output) - g, 1.0)
    order = np.argsort(rems)
    lens = lens[order]
    rems = rems[order]
    mean_out = suf_s[0] / suf_c[0] if suf_c[0] > 0 else 0.0
    peak0 = _peak(lens, rems, n_run, 0.0, 0.0, mean_out)

    # The K oldest queued requests (FCFS heads) and queue-wide sums, in one pass.
    heads = np.full(K, -1, np.int64)
    head_seq = np.full(K, np.iinfo(np.int64).max, np.int64)
    q_tokens = 0.0
    late = 0
    n_q = st.n_queued[e, r]
    s = -1
    for _ in range(n_q):
        s = next_queued(st.status, e, r, s + 1)
        q = st.req[e, r, s]
        q_tokens += st.target[e, r, s]
        if st.generated[e, r, s] == 0 and now - arrival[q] * scale > eng.slo_ttft:
            late += 1
        sq = st.seq[e, r, s]
        if sq < head_seq[K - 1]:
            k = K - 1
            while k > 0 and head_seq[k - 1] > sq:
                head_seq[k] = head_seq[k - 1]
                heads[k] = heads[k - 1]
                k -= 1
            head_seq[k] = sq
            heads[k] = s

    o = obs[e]
    o[0] = st.free_blocks[e, r] / cap
    o[1] = np.log2(1.0 + n_q / unit) / 4.0
    o[2] = n_run / unit
    o[3] = decoding / unit
    o[4] = backlog / cap_tok
    o[5] = reserve / cap
    o[6] = peak0 / cap_tok
    o[7] = st.accum[e, A_TTFT_EMA] / eng.slo_ttft
    o[8] = st.accum[e, A_GAP_EMA] / eng.slo_tpot
    o[9] = st.accum[e, A_LAST_ITER_S] / eng.slo_tpot
    o[10] = 0.0
    if heads[0] >= 0:
        o[10] = (now - arrival[st.req[e, r, heads[0]]] * scale) / eng.slo_ttft
    o[11] = st.accum[e, A_RECOMPUTE_EMA] / cap_tok
    o[12] = st.next_arrival[e] / N
    o[13] = late / n_q if n_q > 0 else 0.0
    o[14] = q_tokens / cap_tok
    o[15] = mean_out / eng.max_output

    G = 16
    F = 8
    cum_len = 0.0
    cum_res = reserve
    cum_blocks = 0
    for k in range(K):
        base = G + k * F
        s = heads[k]
        if s < 0:
            for f in range(F):
                o[base + f] = 0.0
            continue
        q = st.req[e, r, s]
        tgt = st.target[e, r, s]
        cum_len += tgt
        cum_res += ceil_div(wl.prompt[w, q] + eng.max_output, bs)
        cum_blocks += ceil_div(tgt, bs)
        o[base + 0] = 1.0
        o[base + 1] = tgt / cap_tok
        o[base + 2] = wl.pred_bucket[w, q] / 7.0
        o[base + 3] = (now - arrival[q] * scale) / eng.slo_ttft
        o[base + 4] = 1.0 if st.generated[e, r, s] > 0 else 0.0
        o[base + 5] = cum_res / cap
        o[base + 6] = _peak(lens, rems, n_run, cum_len, k + 1.0, mean_out) / cap_tok
        o[base + 7] = 1.0 if cum_blocks <= st.free_blocks[e, r] else 0.0

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


# --- Routing-v0 (envs/routing/kernels.py at 6d12e3f)

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
def rt_advance_replica(st, wl, eng, e, r, until, admit, budget, defer, order, ttft_ema, busy):
    """Run replica ``r``'s iterations that start before ``until`` under the scheduling knobs of
    ``run_iteration`` (Routing-v0: vLLM's). The core keeps one recent-TTFT average per env; it
    is swapped with the replica's own around each iteration."""
    stuck = 0
    while st.r_clock[e, r] < until and not _is_idle(st.n_queued, st.n_running, e, r):
        st.accum[e, A_TTFT_EMA] = ttft_ema[e, r]
        dt = run_iteration(st, wl, eng, e, r, admit, budget, defer, order, st.r_clock[e, r])
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
def rt_write_obs(st, wl, eng, e, i, obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s, hash_blocks,
              sec_per_tok, cap_rps):
    """Observation and mask of a router of env ``e`` for request ``i`` (``snap``/``snap_t``/
    ``sent``: that router's view of the load reports)."""
    w = st.window[e]
    N = wl.n_requests[w]
    R = st.n_queued.shape[1]
    S = st.status.shape[2]
    now = st.clock[e]
    i = min(i, N - 1)
    prompt = wl.prompt[w, i]
    unit = cap_rps * eng.slo_ttft
    work_scale = sec_per_tok / eng.slo_ttft
    if stale_s <= 0.0 or now - snap_t[e] >= stale_s:
        cap = float(eng.capacity_blocks)
        for r in range(R):
            snap[e, r, 0] = st.n_queued[e, r] / unit
            snap[e, r, 1] = st.n_running[e, r] / unit
            snap[e, r, 2] = outstanding_tokens(st, e, r) * work_scale
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
    o[5] = 0.0 if k == 0 else k / max((wl.arrival_s[w, i] - wl.arrival_s[w, i - k]) * st.time_scale[e],
                                      MIN_RATE_SPAN_S) / (R * cap_rps)
    o[6] = unit / COUNT_SCALE
    n_chain = wl.chain_len[w, i]
    chain = wl.chain_ids[w, i]
    C = st.pc_key.shape[2]
    any_ok = False
    for r in range(R):
        base = G + r * F
        cached = 0
        if eng.cache_on:
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
def rt_ttft_excess(st, wl, e, now, bound_s, charged):
    """TTFT beyond the bound newly accrued by env ``e``'s arrived requests (s), every one rescanned."""
    w = st.window[e]
    total = 0.0
    for q in range(st.next_arrival[e]):
        f = st.fate[e, q]
        if f == DROPPED or f == FAILED or f == REJECTED:
            continue
        t = st.ttft[e, q]
        x = max((t if t == t else now - wl.arrival_s[w, q] * st.time_scale[e]) - bound_s, 0.0)
        if x > charged[e, q]:
            total += x - charged[e, q]
            charged[e, q] = x
    return total


@nb.njit(cache=True)
def rt_step_all(st, wl, eng, actions, up, budget, drain_s, stale_s, hash_blocks, sec_per_tok, cap_rps,
                bound_s, bound_penalty, charged, ttft_ema, busy, snap, snap_t, sent, obs, mask, reward,
                terminated, truncated):
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
                rt_advance_replica(st, wl, eng, e, r, t_next, eng.max_seqs, budget, False, ORDER_FCFS,
                                   ttft_ema, busy)
                mark_late_queued(st, wl, eng, e, r, t_next)
            st.clock[e] = t_next
            terminated[e] = False
            truncated[e] = False
        else:
            # The last request: drain every replica (up to drain_s after it arrived).
            end = t
            empty = True
            for r in range(R):
                rt_advance_replica(st, wl, eng, e, r, t + drain_s, eng.max_seqs, budget, False, ORDER_FCFS,
                                   ttft_ema, busy)
                end = max(end, st.r_clock[e, r])
                empty = empty and _is_idle(st.n_queued, st.n_running, e, r)
            st.clock[e] = end
            terminated[e] = empty
            truncated[e] = not empty
        reward[e] = (st.counters[e, C_SLO_MET] - met0) - (st.counters[e, C_SLO_MISSED] - miss0)
        if bound_penalty > 0.0:
            reward[e] -= bound_penalty * rt_ttft_excess(st, wl, e, st.clock[e], bound_s, charged) / bound_s
        rt_write_obs(st, wl, eng, e, st.next_arrival[e], obs, mask, up, ttft_ema, snap, snap_t, sent, stale_s,
                     hash_blocks, sec_per_tok, cap_rps[e])


# --- KVAdmission-v0's step before the lazy decoders (envs/kv_admission/kernels.py at 089590b): every
# env's iteration is envs.core.replica.run_iteration, the per-request loop; the observation is the
# kernels' fill_obs on that plain state.

from envs.core.replica import mark_late_queued_inline, run_iteration_inline  # noqa: E402
from envs.core.state import C_RECOMPUTED_TOKENS  # noqa: E402
from envs.kv_admission.kernels import fill_obs  # noqa: E402


@nb.njit(cache=True)
def _kv_enqueue_arrivals(st, wl, eng, e, until):
    w = st.window[e]
    N = wl.n_requests[w]
    arrival = wl.arrival_s[w]
    scale = st.time_scale[e]
    while st.next_arrival[e] < N and arrival[st.next_arrival[e]] * scale <= until:
        enqueue(st, wl, eng, e, 0, st.next_arrival[e])
        st.next_arrival[e] += 1


@nb.njit(cache=True)
def kv_step_all(
    st, wl, eng, actions, admit_levels, budget_levels, drain_s, recompute_penalty, K,
    obs, mask, reward, terminated, truncated, sc,
):
    n_budget = budget_levels.shape[0]
    for e in range(actions.shape[0]):
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

        now = st.clock[e]
        if st.n_running[e, 0] == 0 and st.n_queued[e, 0] == 0 and st.next_arrival[e] < N:
            now = max(now, arrival[st.next_arrival[e]] * scale)
            _kv_enqueue_arrivals(st, wl, eng, e, now)
        dt = run_iteration_inline(st, wl, eng, e, 0, admit, budget, defer, order, now)
        if dt > 0.0:
            now += dt
        else:
            idle_to = now + eng.idle_tick_s
            if st.next_arrival[e] < N:
                idle_to = min(idle_to, max(now, arrival[st.next_arrival[e]] * scale))
            now = max(idle_to, now + 1e-6)
        st.clock[e] = now
        _kv_enqueue_arrivals(st, wl, eng, e, now)
        mark_late_queued_inline(st, wl, eng, e, 0, now)

        reward[e] = (
            (st.counters[e, C_SLO_MET] - met0)
            - (st.counters[e, C_SLO_MISSED] - miss0)
            - recompute_penalty * (st.counters[e, C_RECOMPUTED_TOKENS] - rec0) / 1000.0
        )
        empty = st.n_running[e, 0] == 0 and st.n_queued[e, 0] == 0
        terminated[e] = st.next_arrival[e] >= N and empty
        last = arrival[N - 1] * scale
        truncated[e] = (not terminated[e]) and now > last + drain_s
        fill_obs(st, wl, eng, e, K, obs, mask, admit_levels, sc, e)


def assert_same_state(a: S.ClusterState, b: S.ClusterState, what: str, skip: tuple[str, ...] = ()) -> None:
    """Every field of two cluster states byte for byte but those in ``skip``, the episode gap heap by the gaps
    each env keeps (``S.kept_gaps``): its array depends on how the same gaps were batched into pushes (a decode
    run pushes an iteration's gap once for its n requests, one iteration at a time n times). Raises
    ``AssertionError`` naming ``what`` and the first field (or env's heap) that differs."""
    for name, x, y in zip(a._fields, a, b):
        if name in skip:
            continue
        if name == "gap_heap":
            for e in range(x.shape[0]):
                n = int(a.counters[e, S.C_GAPS])
                assert np.array_equal(S.kept_gaps(x[e], n), S.kept_gaps(y[e], n)), \
                    f"{what}: env {e}'s gap heap keeps other gaps"
        else:
            assert x.tobytes() == y.tobytes(), f"{what}: state.{name} differs"
