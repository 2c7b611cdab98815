"""Numba kernels of Disaggregation-v0: one call advances every env of the batch by one interval.

Each instance is an ``envs.core`` replica (vLLM continuous batching, chunked prefill, paged KV,
preemption by recompute) in one of three roles:

* colocated: runs prefill and decode of its own requests (vLLM's default engine);
* prefill: runs prefill only; when a request's last prompt chunk is computed (its first token
  sampled) the request leaves the running batch and its KV stays HELD on the instance until a
  decode instance takes it (DistServe Sec. 4.3: the prefill instance is the queueing buffer;
  decode instances pull KV when they have memory);
* decode: admits a request when its KV has arrived (blocks reserved when the transfer starts,
  freed on the prefill side when it lands); preempted requests are recomputed there.

KV transfer: ``tokens x KV bytes per token per GPU / link bandwidth + latency`` with the link of
``scenario.link_matrix`` (``hwmodels.kv_transfer_time``). With layer-wise transfer (Splitwise,
ISCA'24 Sec. IV-C) a handover that finds a decode instance at once has streamed all but the last
layer during its final prefill iteration: only max(t_x - that iteration, t_x / layers) is exposed;
a handover that had to wait sends all of it then. Transfers run alongside both instances'
iterations (separate copy engines / NICs), so they only delay the request itself.

Between decisions the kernel runs a discrete-event loop over arrivals, engine iterations
(each instance in the order of its clock), transfer landings and warm-up ends. An engine
iteration is ``envs.core.lazy.run_iteration_lazy`` (the same results as
``envs.core.replica.run_iteration``, bit for bit): the steady decoders of a decode or colocated
instance are kept lazily, O(1) per iteration instead of per request; ``DisaggregationVecEnv.state``
writes them back.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core.lazy import materialize, reset_lazy, run_iteration_lazy_inline
from envs.core.replica import (
    ORDER_FCFS,
    ceil_div,
    enqueue,
    next_queued,
    rejected_at_arrival,
    reset_env_state,
    reset_replica,
)
from envs.core.state import C_PREEMPTIONS, C_PREFILL_TOKENS, DROPPED, FINISHED, FREE, PENDING, RUNNING

ROLE_PREFILL = 0
ROLE_DECODE = 1
ROLE_COLOCATED = 2
ROLES = ("prefill", "decode", "colocated")

ACTIVE = 0
DRAINING = 1  # finishing its work in the old role; takes nothing new
WARMING = 2  # restarting in the new role; serves nothing

# Slot states beyond envs.core.state's FREE / QUEUED / RUNNING.
HELD = 3  # prefill done, KV held on the prefill instance until a decode instance takes it
SENDING = 4  # prefill side of a transfer in flight (blocks still held)
INCOMING = 5  # decode side of a transfer in flight (blocks reserved)

RULE_BALANCE = 0
RULE_OVERFLOW = 1
RULES = ("balance", "overflow")

FIRST_TOKEN_DECODE = 0
FIRST_TOKEN_PREFILL = 1

# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "GLOBAL_FEATURES then INSTANCE_FEATURES per instance, with ttft/tpot_headroom (036d6f6), as its zoo "
        "checkpoint (9363fae) was trained on"
    ),
}
OBS_VERSION = 1
GLOBAL_FEATURES = (
    "elapsed",  # decisions taken / decisions per episode
    "arrival_rate",  # arrivals in the last interval per s / (instances x colocated capacity of the trace)
    "prompt_mean",  # mean prompt of the last interval's arrivals / TOKEN_SCALE_PROMPT
    "output_mean",  # mean output of requests finished in the last interval / TOKEN_SCALE_OUTPUT
    "waiting",  # arrived requests no instance could take yet / COUNT_SCALE
    "handover_backlog",  # prefilled requests waiting for a decode instance / COUNT_SCALE
    "ttft_recent",  # mean TTFT of requests finished in the last interval / TTFT SLO
    "tpot_recent",  # mean TPOT of requests finished in the last interval / TPOT SLO
    "attainment_recent",  # share of those requests within both SLOs (1 when none finished)
    "rule",  # dispatch rule in force (0 balance, 1 overflow)
    # The scenario's SLOs against one instance's step times at the training parts' mean request
    # (constant in an episode; known before the first request, as to DistServe's offline search):
    "ttft_headroom",  # log2(SLO TTFT / prefill time of the mean prompt) / HEADROOM_SCALE
    "tpot_headroom",  # log2(SLO TPOT / decode iteration time of one sequence) / HEADROOM_SCALE
)
INSTANCE_FEATURES = (
    "prefill",  # role one-hot (the role it serves in now; while switching, the old one)
    "decode",
    "colocated",
    "switching",  # 1 while draining or warming towards another role
    "warming",  # 1 while warming up (serves nothing)
    "queued",  # queued requests / COUNT_SCALE
    "running",  # running requests / COUNT_SCALE
    "outstanding",  # prefill tokens not yet computed, queued + running / TOKEN_SCALE
    "kv_use",  # used KV blocks (running, held, in flight) / capacity
)
G = len(GLOBAL_FEATURES)
F = len(INSTANCE_FEATURES)
COUNT_SCALE = 64.0
TOKEN_SCALE = 65536.0
TOKEN_SCALE_PROMPT = 4096.0
TOKEN_SCALE_OUTPUT = 1024.0
HEADROOM_SCALE = 8.0  # log2 ratios of 2^-8 .. 2^8 map to -1 .. 1

# Per-env accumulators (DState.acc[e, k]).
X_KV_BYTES = 0  # KV bytes moved, all GPUs of the instances
X_TRANSFERS = 1
X_ROLE_CHANGES = 2
X_REJECTED = 3  # role actions rejected (no prefill-capable or no decode-capable instance left)
X_MET = 4  # finished within both SLOs
X_MISSED = 5  # finished outside an SLO
X_ARR_N = 6  # --- last interval (reset at each step)
X_ARR_PROMPT = 7
X_FIN_N = 8
X_FIN_OUT = 9
X_FIN_MET = 10
X_FIN_TTFT = 11
X_FIN_TPOT = 12
X_WARM_GPU_S = 13  # instance-seconds spent warming up
X_TRANSFER_S = 14  # sum of exposed transfer times
N_ACC = 15


@nb.njit(cache=True, inline="always")
def instance_empty(st, ds, e, r):
    return st.n_queued[e, r] == 0 and st.n_running[e, r] == 0 and ds.n_held[e, r] == 0 and ds.n_incoming[e, r] == 0


@nb.njit(cache=True, inline="always")
def check_drained(st, ds, pr, e, r, now):
    """A draining instance with nothing left starts its warm-up (for the step's own checks;
    ``simulate`` has its copy, ``drained``)."""
    if ds.phase[e, r] == DRAINING and instance_empty(st, ds, e, r):
        ds.phase[e, r] = WARMING
        ds.warm_until[e, r] = max(now, st.r_clock[e, r]) + pr.switch_s
        ds.acc[e, X_WARM_GPU_S] += pr.switch_s * pr.tp


@nb.njit(cache=True)
def simulate(st, wl, eng, ds, pr, lz, e, t0, t1):
    """Run env ``e``'s events from ``t0`` (the handover backlog is offered first) until ``t1``
    (``lz``: the instances' lazy decoders, row ``e * R + r``; ``envs.core.lazy``).

    The event loop's helpers are closures over the state tuples, not module functions that take
    them: numba inlines a closure and loads each captured tuple where it is used, while an inlined
    function that takes the tuples as arguments paid an atomic reference-count update (an add,
    then a subtract) per member array on every call, about 70 per event (issue 17).
    """
    R = st.n_queued.shape[1]
    S = st.status.shape[2]
    Q = ds.ho_r.shape[1]
    w = st.window[e]
    N = wl.n_requests[w]
    scale = st.time_scale[e]
    arrival = wl.arrival_s[w]

    def load(r):
        return st.n_queued[e, r] + st.n_running[e, r] + ds.n_held[e, r] + ds.n_incoming[e, r]

    def drained(r, now):
        """A draining instance with nothing left starts its warm-up."""
        if ds.phase[e, r] == DRAINING and st.n_queued[e, r] == 0 and st.n_running[e, r] == 0 \
                and ds.n_held[e, r] == 0 and ds.n_incoming[e, r] == 0:
            ds.phase[e, r] = WARMING
            ds.warm_until[e, r] = max(now, st.r_clock[e, r]) + pr.switch_s
            ds.acc[e, X_WARM_GPU_S] += pr.switch_s * pr.tp

    def outstanding(r):
        """Prefill tokens not yet computed for the instance's queued and running requests."""
        tot = 0
        for i in range(st.n_running[e, r]):
            s = st.run_list[e, r, i]
            tot += max(st.target[e, r, s] - st.kv_tokens[e, r, s], 0)
        s = -1
        for _ in range(st.n_queued[e, r]):
            s = next_queued(st.status, e, r, s + 1)
            tot += st.target[e, r, s] - st.kv_tokens[e, r, s]
        return tot

    def pick_prefill():
        """Instance for a new request under the env's rule; -1 when none can take it."""
        best_p, val_p, best_c, val_c = -1, np.inf, -1, np.inf
        for r in range(R):
            if ds.phase[e, r] != ACTIVE or ds.role[e, r] == ROLE_DECODE or load(r) >= S:
                continue
            if st.n_queued[e, r] >= pr.dispatch_queue:  # the dispatcher holds it in its own FIFO
                continue
            v = ds.pending[e, r]
            if ds.role[e, r] == ROLE_PREFILL:
                if v < val_p:
                    best_p, val_p = r, v
            elif v < val_c:
                best_c, val_c = r, v
        if ds.rule[e] == RULE_OVERFLOW:
            # Splitwise (ISCA'24 Sec. IV-B): the prompt pool first; the mixed pool takes a request
            # when the prompt pool is backed up past overflow_tokens (or is empty).
            if best_p >= 0 and (val_p <= pr.overflow_tokens or best_c < 0):
                return best_p
            return best_c
        # balance: least outstanding prefill work among every instance that prefills (JSQ on tokens)
        if best_c >= 0 and (best_p < 0 or val_c < val_p):
            return best_c
        return best_p

    def pick_decode(need):
        """Instance to receive a handover of ``need`` KV blocks; -1 when none has room now.

        Decode instances first, the one with the most free KV (DistServe's decode instances pull
        when they have memory); colocated instances take handovers only under the overflow rule
        when no decode instance has room (Splitwise's mixed pool), or when no decode instance is
        active at all.
        """
        best_d, free_d, best_c, free_c = -1, -1, -1, -1
        any_d = False
        for r in range(R):
            if ds.phase[e, r] != ACTIVE or ds.role[e, r] == ROLE_PREFILL:
                continue
            if ds.role[e, r] == ROLE_DECODE:
                any_d = True
            if load(r) >= S or st.n_running[e, r] + ds.n_incoming[e, r] >= eng.max_seqs:
                continue
            free = st.free_blocks[e, r] - need
            # keep one block per running request free for its next token (vLLM's watermark idea)
            if free < st.n_running[e, r] + ds.n_incoming[e, r] + 1:
                continue
            if ds.role[e, r] == ROLE_DECODE:
                if free > free_d:
                    best_d, free_d = r, free
            elif free > free_c:
                best_c, free_c = r, free
        if best_d >= 0:
            return best_d
        if ds.rule[e] == RULE_OVERFLOW or not any_d:
            return best_c
        return -1

    def free_slot(r):
        for s in range(S):
            if st.status[e, r, s] == FREE:
                return s
        return -1

    def start_transfers(now):
        """Hand the backlog over, oldest first, while a decode instance has room (head-of-line)."""
        while ds.ho_len[e] > 0:
            h = ds.ho_head[e]
            src = ds.ho_r[e, h]
            s = ds.ho_s[e, h]
            tokens = st.kv_tokens[e, src, s]
            need = ceil_div(tokens, eng.block_size)
            dst = pick_decode(need)
            if dst < 0:
                return
            d = free_slot(dst)
            ds.ho_head[e] = (h + 1) % Q
            ds.ho_len[e] -= 1
            t0 = max(now, ds.ho_t[e, h])
            bytes_gpu = tokens * pr.kv_bytes_gpu
            t_x = bytes_gpu / pr.link_bw[src, dst] + pr.link_latency_s
            exposed = t_x
            if pr.layerwise and t0 <= ds.ho_t[e, h]:
                exposed = max(t_x - ds.ho_dt[e, h], t_x / pr.layers)
            st.status[e, src, s] = SENDING
            st.status[e, dst, d] = INCOMING
            st.req[e, dst, d] = st.req[e, src, s]
            st.blocks[e, dst, d] = need
            st.free_blocks[e, dst] -= need
            ds.n_incoming[e, dst] += 1
            x = ds.n_xf[e]
            ds.xf_sr[e, x] = src
            ds.xf_ss[e, x] = s
            ds.xf_dr[e, x] = dst
            ds.xf_ds[e, x] = d
            ds.xf_land[e, x] = t0 + exposed
            ds.n_xf[e] = x + 1
            ds.acc[e, X_KV_BYTES] += bytes_gpu * pr.tp
            ds.acc[e, X_TRANSFERS] += 1.0
            ds.acc[e, X_TRANSFER_S] += exposed

    def land(x):
        """Transfer ``x`` lands: the decode instance runs the request from its next iteration."""
        src, s, dst, d = ds.xf_sr[e, x], ds.xf_ss[e, x], ds.xf_dr[e, x], ds.xf_ds[e, x]
        t = ds.xf_land[e, x]
        q = st.req[e, src, s]
        tokens = st.kv_tokens[e, src, s]
        st.free_blocks[e, src] += st.blocks[e, src, s]
        st.blocks[e, src, s] = 0
        st.status[e, src, s] = FREE
        ds.n_held[e, src] -= 1
        ds.stalled[e, src] = False
        was_idle = st.n_running[e, dst] == 0 and st.n_queued[e, dst] == 0
        st.status[e, dst, d] = RUNNING
        st.run_list[e, dst, st.n_running[e, dst]] = d
        st.n_running[e, dst] += 1
        ds.n_incoming[e, dst] -= 1
        st.seq[e, dst, d] = st.next_seq[e, dst]
        st.next_seq[e, dst] += 1
        st.target[e, dst, d] = tokens
        st.kv_tokens[e, dst, d] = tokens
        st.generated[e, dst, d] = st.generated[e, src, s]
        st.gaps_over[e, dst, d] = 0
        st.missed[e, dst, d] = st.missed[e, src, s]
        st.top_gaps[e, dst, d, :] = 0.0
        st.sched[e, dst, d] = 0
        if pr.first_token == FIRST_TOKEN_DECODE:
            st.last_tok_t[e, dst, d] = t
            st.ttft[e, q] = t - arrival[q] * scale
        else:
            st.last_tok_t[e, dst, d] = st.last_tok_t[e, src, s]
        if was_idle and st.r_clock[e, dst] < t:
            st.r_clock[e, dst] = t
        ds.stalled[e, dst] = False
        n = ds.n_xf[e] - 1
        ds.xf_sr[e, x], ds.xf_ss[e, x], ds.xf_dr[e, x], ds.xf_ds[e, x] = ds.xf_sr[e, n], ds.xf_ss[e, n], ds.xf_dr[e, n], ds.xf_ds[e, n]
        ds.xf_land[e, x] = ds.xf_land[e, n]
        ds.n_xf[e] = n
        drained(src, t)

    def iterate(r):
        """One engine iteration of instance ``r``; a prefill instance then hands finished
        prefills over."""
        now = st.r_clock[e, r]
        p0 = st.counters[e, C_PREFILL_TOKENS]
        n0 = st.counters[e, C_PREEMPTIONS]
        # At most two tries: after a preemption-only iteration (0 s) the next one admits.
        dt = 0.0
        for _ in range(2):
            dt = run_iteration_lazy_inline(st, wl, eng, lz, e, eng.max_seqs, pr.budget, False, ORDER_FCFS, now,
                                           r, e * R + r, ds.role[e, r] != ROLE_PREFILL)
            if dt != 0.0:
                break
        if dt == 0.0:  # nothing fits until KV held here leaves or reserved KV lands
            ds.stalled[e, r] = True
            ds.pending[e, r] = outstanding(r)
            return
        ds.busy[e, r] += dt
        if ds.role[e, r] == ROLE_PREFILL:
            keep = 0
            for i in range(st.n_running[e, r]):
                s = st.run_list[e, r, i]
                if st.generated[e, r, s] >= 1:
                    st.status[e, r, s] = HELD
                    ds.n_held[e, r] += 1
                    k = (ds.ho_head[e] + ds.ho_len[e]) % Q
                    ds.ho_r[e, k] = r
                    ds.ho_s[e, k] = s
                    ds.ho_t[e, k] = st.r_clock[e, r]
                    ds.ho_dt[e, k] = dt
                    ds.ho_len[e] += 1
                else:
                    st.run_list[e, r, keep] = s
                    keep += 1
            st.n_running[e, r] = keep
        if st.counters[e, C_PREEMPTIONS] != n0:  # recompute re-queued work: count it exactly
            ds.pending[e, r] = outstanding(r)
        else:
            ds.pending[e, r] -= st.counters[e, C_PREFILL_TOKENS] - p0
        drained(r, st.r_clock[e, r])

    if ds.ho_len[e] > 0:
        start_transfers(t0)
    while True:
        ta = np.inf
        if st.next_arrival[e] < N and not ds.blocked[e]:
            ta = arrival[st.next_arrival[e]] * scale
        tr, rr = np.inf, -1
        tw, wr = np.inf, -1
        for r in range(R):
            if ds.phase[e, r] == WARMING:
                if ds.warm_until[e, r] < tw:
                    tw, wr = ds.warm_until[e, r], r
            elif not ds.stalled[e, r] and (st.n_queued[e, r] > 0 or st.n_running[e, r] > 0):
                if st.r_clock[e, r] < tr:
                    tr, rr = st.r_clock[e, r], r
        tx, xi = np.inf, -1
        for x in range(ds.n_xf[e]):
            if ds.xf_land[e, x] < tx:
                tx, xi = ds.xf_land[e, x], x
        t = min(min(ta, tr), min(tx, tw))
        if t >= t1:
            break
        if tx == t:
            land(xi)
            ds.blocked[e] = False
        elif tw == t:
            ds.role[e, wr] = ds.target[e, wr]
            ds.phase[e, wr] = ACTIVE
            st.r_clock[e, wr] = t
            ds.blocked[e] = False
        elif ta == t:
            i = st.next_arrival[e]
            if wl.failed[w, i] or rejected_at_arrival(eng, wl.prompt[w, i], wl.output[w, i]):
                # never served: the core ends it at once (FAILED / REJECTED) and counts it
                enqueue(st, wl, eng, e, 0, i)
                st.next_arrival[e] = i + 1
                continue
            r = pick_prefill()
            if r < 0:
                ds.blocked[e] = True
                continue
            if st.n_queued[e, r] == 0 and st.n_running[e, r] == 0 and st.r_clock[e, r] < t:
                st.r_clock[e, r] = t
            enqueue(st, wl, eng, e, r, i)
            st.next_arrival[e] = i + 1
            ds.pending[e, r] += wl.prompt[w, i]
            ds.stalled[e, r] = False
            ds.acc[e, X_ARR_N] += 1.0
            ds.acc[e, X_ARR_PROMPT] += wl.prompt[w, i]
        else:
            iterate(rr)
            ds.blocked[e] = False
            t = st.r_clock[e, rr]
        if ds.ho_len[e] > 0:
            start_transfers(t)


@nb.njit(cache=True)
def score(st, wl, ds, pr, e):
    """Score requests finished since the last call on TTFT <= SLO and mean TPOT <= SLO
    (TPOT = (E2E - TTFT) / (output - 1), MLPerf Inference / DistServe); returns (met, missed)."""
    w = st.window[e]
    n = st.next_arrival[e]
    lo = ds.scored_lo[e]
    met = 0
    missed = 0
    advancing = True
    for i in range(lo, n):
        if not ds.scored[e, i] and st.fate[e, i] != PENDING and st.fate[e, i] != FINISHED:
            ds.scored[e, i] = True  # failed or rejected (not an SLO miss), or dropped (a miss)
            if st.fate[e, i] == DROPPED:
                missed += 1
        if not ds.scored[e, i] and st.fate[e, i] == FINISHED:
            ds.scored[e, i] = True
            out = wl.output[w, i]
            tpot = (st.e2e[e, i] - st.ttft[e, i]) / (out - 1) if out > 1 else 0.0
            ds.tpot[e, i] = tpot if out > 1 else np.nan  # one-token outputs: no TPOT to report
            ok = st.ttft[e, i] <= pr.slo_ttft and tpot <= pr.slo_tpot
            st.slo_met[e, i] = ok
            if ok:
                met += 1
            else:
                missed += 1
            ds.acc[e, X_FIN_N] += 1.0
            ds.acc[e, X_FIN_OUT] += out
            ds.acc[e, X_FIN_MET] += 1.0 if ok else 0.0
            ds.acc[e, X_FIN_TTFT] += st.ttft[e, i]
            ds.acc[e, X_FIN_TPOT] += tpot
        if advancing and ds.scored[e, i]:
            ds.scored_lo[e] = i + 1
        else:
            advancing = False
    ds.acc[e, X_MET] += met
    ds.acc[e, X_MISSED] += missed
    return met, missed


@nb.njit(cache=True)
def apply_roles(ds, e, roles, first):
    """Set target roles; False (and nothing changes) when the result could not serve: no
    instance would prefill or none would decode."""
    R = roles.shape[0]
    can_p = False
    can_d = False
    for r in range(R):
        can_p = can_p or roles[r] != ROLE_DECODE
        can_d = can_d or roles[r] != ROLE_PREFILL
    if not (can_p and can_d):
        ds.acc[e, X_REJECTED] += 1.0
        return False
    for r in range(R):
        if first:  # the deployment starts in the first decision's roles, at no cost
            ds.role[e, r] = roles[r]
            ds.target[e, r] = roles[r]
            ds.phase[e, r] = ACTIVE
        elif roles[r] != ds.target[e, r]:
            ds.target[e, r] = roles[r]
            if roles[r] != ds.role[e, r]:
                ds.acc[e, X_ROLE_CHANGES] += 1.0
                if ds.phase[e, r] == ACTIVE:
                    ds.phase[e, r] = DRAINING
            elif ds.phase[e, r] == DRAINING:  # back to the role it still serves: drain cancelled
                ds.phase[e, r] = ACTIVE
    return True


@nb.njit(cache=True)
def write_obs(st, wl, eng, ds, pr, e, obs):
    R = st.n_queued.shape[1]
    o = obs[e]
    o[0] = ds.step_i[e] / pr.decisions
    o[1] = ds.acc[e, X_ARR_N] / pr.interval_s / pr.ref_rps
    o[2] = ds.acc[e, X_ARR_PROMPT] / max(ds.acc[e, X_ARR_N], 1.0) / TOKEN_SCALE_PROMPT
    nf = ds.acc[e, X_FIN_N]
    o[3] = ds.acc[e, X_FIN_OUT] / max(nf, 1.0) / TOKEN_SCALE_OUTPUT
    w = st.window[e]
    arrived = np.searchsorted(wl.arrival_s[w], st.clock[e] / st.time_scale[e], side="right")
    o[4] = max(arrived - st.next_arrival[e], 0) / COUNT_SCALE
    o[5] = ds.ho_len[e] / COUNT_SCALE
    o[6] = ds.acc[e, X_FIN_TTFT] / max(nf, 1.0) / pr.slo_ttft
    o[7] = ds.acc[e, X_FIN_TPOT] / max(nf, 1.0) / pr.slo_tpot
    o[8] = ds.acc[e, X_FIN_MET] / nf if nf > 0 else 1.0
    o[9] = ds.rule[e]
    o[10] = pr.ttft_headroom
    o[11] = pr.tpot_headroom
    cap = float(eng.capacity_blocks)
    for r in range(R):
        b = G + r * F
        o[b + 0] = 1.0 if ds.role[e, r] == ROLE_PREFILL else 0.0
        o[b + 1] = 1.0 if ds.role[e, r] == ROLE_DECODE else 0.0
        o[b + 2] = 1.0 if ds.role[e, r] == ROLE_COLOCATED else 0.0
        o[b + 3] = 1.0 if ds.phase[e, r] != ACTIVE or ds.target[e, r] != ds.role[e, r] else 0.0
        o[b + 4] = 1.0 if ds.phase[e, r] == WARMING else 0.0
        o[b + 5] = st.n_queued[e, r] / COUNT_SCALE
        o[b + 6] = st.n_running[e, r] / COUNT_SCALE
        o[b + 7] = ds.pending[e, r] / TOKEN_SCALE
        o[b + 8] = 1.0 - st.free_blocks[e, r] / cap


@nb.njit(cache=True)
def all_done(st, ds, wl, e):
    R = st.n_queued.shape[1]
    if st.next_arrival[e] < wl.n_requests[st.window[e]] or ds.n_xf[e] > 0 or ds.ho_len[e] > 0:
        return False
    for r in range(R):
        if st.n_queued[e, r] > 0 or st.n_running[e, r] > 0:
            return False
    return True


@nb.njit(cache=True)
def step_all(st, wl, eng, ds, pr, lz, actions, obs, reward, terminated, truncated):
    """Every env applies its action (roles [R], rule) and runs one interval."""
    E = actions.shape[0]
    R = st.n_queued.shape[1]
    for e in range(E):
        first = ds.step_i[e] == 0
        apply_roles(ds, e, actions[e, :R], first)
        ds.rule[e] = actions[e, R]
        for r in range(R):
            check_drained(st, ds, pr, e, r, st.clock[e])
        for k in range(X_ARR_N, X_FIN_TPOT + 1):
            ds.acc[e, k] = 0.0
        ds.step_i[e] += 1
        last = ds.step_i[e] >= pr.decisions
        t1 = st.clock[e] + pr.interval_s
        if last:
            t1 = pr.decisions * pr.interval_s + pr.drain_s
        simulate(st, wl, eng, ds, pr, lz, e, st.clock[e], t1)
        met, missed = score(st, wl, ds, pr, e)
        if last:
            done = all_done(st, ds, wl, e)
            end = t1
            if done:
                end = pr.decisions * pr.interval_s
                for r in range(R):
                    end = max(end, st.r_clock[e, r])
            st.clock[e] = end
            for i in range(wl.n_requests[st.window[e]]):
                if st.fate[e, i] == PENDING:  # never finished (failed and rejected ones do not count)
                    missed += 1
            terminated[e] = done
            truncated[e] = not done
        else:
            st.clock[e] = t1
            terminated[e] = False
            truncated[e] = False
        reward[e] = (met - missed) / (pr.interval_s * pr.n_gpus)
        write_obs(st, wl, eng, ds, pr, e, obs)


@nb.njit(cache=True)
def reset_all(st, wl, eng, ds, pr, lz, envs, windows, time_scales, obs):
    R = st.n_queued.shape[1]
    for j in range(envs.shape[0]):
        e = envs[j]
        reset_env_state(st, e, windows[j], time_scales[j])
        for r in range(R):
            reset_replica(st, eng, e, r)
            reset_lazy(lz, e * R + r)
            ds.role[e, r] = ROLE_COLOCATED
            ds.target[e, r] = ROLE_COLOCATED
            ds.phase[e, r] = ACTIVE
            ds.warm_until[e, r] = 0.0
            ds.stalled[e, r] = False
            ds.pending[e, r] = 0.0
            ds.n_held[e, r] = 0
            ds.n_incoming[e, r] = 0
            ds.busy[e, r] = 0.0
        ds.ho_head[e] = 0
        ds.ho_len[e] = 0
        ds.n_xf[e] = 0
        ds.rule[e] = RULE_BALANCE
        ds.step_i[e] = 0
        ds.blocked[e] = False
        ds.scored_lo[e] = 0
        ds.scored[e, :] = False
        ds.tpot[e, :] = np.nan
        ds.acc[e, :] = 0.0
        write_obs(st, wl, eng, ds, pr, e, obs)


@nb.njit(cache=True)
def materialize_all(st, eng, lz):
    """Every lazily kept decoder of every instance written back (``envs.core.lazy.materialize``):
    the per-slot fields of ``st`` are then those of ``envs.core.replica.run_iteration``."""
    E, R = st.n_running.shape
    for e in range(E):
        for r in range(R):
            materialize(st, eng, lz, e, r, e * R + r)
