"""Numba kernels of the multi-agent cluster (``envs.multi.env``): one call steps every env.

A step is one batch of arrivals, one per ingress router (router j gets the j-th). Routers decide
together from their own views (none sees the others' concurrent choices); each request then joins
its replica at its own arrival time while every replica runs its iterations under its admission
controller's knobs (KVAdmission-v0's action, held until the next step). The autoscaler's change
applies at the start of a step on its control instants (every ``interval_s``): new replicas serve
after their cold start with an empty cache; removed ones take no new requests and drain.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.kv_admission import kernels as KVK
from envs.routing import kernels as RK
from envs.core.capacity import count_unit
from envs.core.replica import mark_late_queued, reset_env_state, reset_replica
from envs.core.state import C_SLO_MET, C_SLO_MISSED
from envs.kv_admission.env import N_ORDERS

OFF, STARTING, SERVING, DRAINING = 0, 1, 2, 3

# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "the autoscaler role's AUTOSCALER_FEATURES (the router and admission roles see Routing-v0's and "
        "KVAdmission-v0's observations and versions: envs.observation_layout)"
    ),
}
OBS_VERSION = 1
AUTOSCALER_FEATURES = (
    "serving",  # serving replicas / R
    "starting",  # replicas in cold start / R
    "draining",  # draining replicas / R
    "rate",  # arrivals in the last interval per second / one replica's capacity (no reuse)
    "outstanding",  # queued + running requests per serving replica / COUNT_SCALE
    "kv_use",  # mean KV use of serving replicas
    "ttft_recent",  # mean recent TTFT of serving replicas / TTFT SLO
    "missed_recent",  # requests known missed in the last interval / arrivals in it
    "control",  # 1 at a control instant (the action applies), else 0 (only "hold" is legal)
    "elapsed",  # share of the episode's requests routed
)
N_AS = len(AUTOSCALER_FEATURES)


@nb.njit(cache=True, inline="always")
def decode_admission(a, n_budget):
    """KVAdmission-v0's action packing (``envs.kv_admission.env.encode_action``)."""
    order = a % N_ORDERS
    a //= N_ORDERS
    defer = a % 2 == 1
    a //= 2
    return a // n_budget, a % n_budget, defer, order


@nb.njit(cache=True)
def lifecycle(st, eng, e, t, life, ready_at, up, bill_t, billed_s):
    """Bill replica-seconds up to ``t``; finished cold starts serve, drained replicas stop."""
    R = life.shape[1]
    n = 0
    for r in range(R):
        if life[e, r] != OFF:
            n += 1
    if t > bill_t[e]:
        billed_s[e] += n * (t - bill_t[e])
        bill_t[e] = t
    for r in range(R):
        if life[e, r] == STARTING and ready_at[e, r] <= t:
            reset_replica(st, eng, e, r)  # a new instance: empty queue, KV pool and prefix cache
            st.r_clock[e, r] = ready_at[e, r]
            life[e, r] = SERVING
            up[e, r] = 1.0
        elif life[e, r] == DRAINING and st.n_queued[e, r] == 0 and st.n_running[e, r] == 0:
            life[e, r] = OFF


@nb.njit(cache=True)
def advance_all(st, wl, eng, e, until, adm, admit_levels, budget_levels, ttft_ema, busy, rep_slo,
                life, ready_at, up, bill_t, billed_s):
    """Every replica runs to ``until`` under its admission knobs; per-replica SLO terms."""
    R = life.shape[1]
    nb_ = budget_levels.shape[0]
    for r in range(R):
        ai, bi, defer, order = decode_admission(adm[e, r], nb_)
        m0 = st.counters[e, C_SLO_MET]
        x0 = st.counters[e, C_SLO_MISSED]
        RK.advance_replica(st, wl, eng, e, r, until, admit_levels[ai], budget_levels[bi], defer, order,
                           ttft_ema, busy)
        mark_late_queued(st, wl, eng, e, r, until)
        rep_slo[e, r] += (st.counters[e, C_SLO_MET] - m0) - (st.counters[e, C_SLO_MISSED] - x0)
    lifecycle(st, eng, e, until, life, ready_at, up, bill_t, billed_s)


@nb.njit(cache=True)
def _least_outstanding_serving(st, e, life):
    best = -1
    best_n = 1 << 30
    for r in range(life.shape[1]):
        if life[e, r] == SERVING:
            n = st.n_queued[e, r] + st.n_running[e, r]
            if n < best_n:
                best, best_n = r, n
    return best


@nb.njit(cache=True)
def apply_scaling(st, e, now, delta, life, ready_at, up, cold_start, min_replicas):
    """Add (cold start) or remove (cancel a cold start, else drain the least busy) replicas."""
    R = life.shape[1]
    for _ in range(max(delta, 0)):
        for r in range(R):
            if life[e, r] == OFF:
                life[e, r] = STARTING
                ready_at[e, r] = now + cold_start
                break
    for _ in range(max(-delta, 0)):
        fleet = 0
        for r in range(R):
            if life[e, r] == STARTING or life[e, r] == SERVING:
                fleet += 1
        if fleet <= min_replicas:
            break
        done = False
        for r in range(R - 1, -1, -1):
            if life[e, r] == STARTING:
                life[e, r] = OFF
                done = True
                break
        if not done:
            r = _least_outstanding_serving(st, e, life)
            if r >= 0:
                life[e, r] = DRAINING
                up[e, r] = 0.0


@nb.njit(cache=True)
def write_autoscaler(st, eng, e, s_obs, s_mask, life, ttft_ema, control, last_rate, last_missed,
                     cap_rps, max_step, min_replicas):
    R = life.shape[1]
    n = np.zeros(4)
    out = 0.0
    kv = 0.0
    ttft = 0.0
    for r in range(R):
        n[life[e, r]] += 1
        if life[e, r] == SERVING:
            out += st.n_queued[e, r] + st.n_running[e, r]
            kv += 1.0 - st.free_blocks[e, r] / eng.capacity_blocks
            ttft += ttft_ema[e, r] / eng.slo_ttft
    ns = max(n[SERVING], 1.0)
    o = s_obs[e]
    o[0] = n[SERVING] / R
    o[1] = n[STARTING] / R
    o[2] = n[DRAINING] / R
    o[3] = last_rate[e] / cap_rps
    o[4] = out / ns / RK.COUNT_SCALE
    o[5] = kv / ns
    o[6] = ttft / ns
    o[7] = last_missed[e]
    o[8] = 1.0 if control[e] else 0.0
    o[9] = st.next_arrival[e] / st.fate.shape[1]
    fleet = n[SERVING] + n[STARTING]
    for a in range(2 * max_step + 1):
        d = a - max_step
        s_mask[e, a] = d == 0 or (control[e] and min_replicas <= fleet + d <= R)


@nb.njit(cache=True)
def write_all(st, wl, eng, e, J, r_obs, r_mask, up, ttft_ema, rsnap, rsnap_t, rsent, stale_s,
              hash_blocks, spt, K, a_obs, a_mask, admit_levels, n_budgets, s_obs, s_mask, life, control,
              last_rate, last_missed, cap_rps, max_step, min_replicas):
    for j in range(J):
        RK.write_obs(st, wl, eng, e, st.next_arrival[e] + j, r_obs[j], r_mask[j], up, ttft_ema,
                     rsnap[j], rsnap_t[j], rsent[j], stale_s, hash_blocks, spt, cap_rps)
    for r in range(life.shape[1]):
        KVK.write_obs(st, wl, eng, e, K, a_obs[r], a_mask[r], admit_levels, n_budgets, count_unit(cap_rps, eng.slo_ttft),
                      r)
    write_autoscaler(st, eng, e, s_obs, s_mask, life, ttft_ema, control, last_rate, last_missed,
                     cap_rps, max_step, min_replicas)


@nb.njit(cache=True)
def step_all(st, wl, eng, r_act, adm, s_act, admit_levels, budget_levels, life, ready_at, up, bill_t,
             billed_s, control, next_control, interval_s, cold_start, min_replicas, max_step, drain_s,
             arrivals, missed_ctl, last_rate, last_missed, cap_rps, stale_s, hash_blocks, spt, ttft_ema,
             busy, rsnap, rsnap_t, rsent, rep_slo, rerouted, K, r_obs, r_mask, a_obs, a_mask, s_obs,
             s_mask, slo_rew, terminated, truncated):
    J = r_act.shape[1]
    for e in range(r_act.shape[0]):
        w = st.window[e]
        N = wl.n_requests[w]
        scale = st.time_scale[e]
        met0 = st.counters[e, C_SLO_MET]
        miss0 = st.counters[e, C_SLO_MISSED]
        rep_slo[e, :] = 0.0
        now = st.clock[e]
        if control[e]:
            apply_scaling(st, e, now, s_act[e] - max_step, life, ready_at, up, cold_start, min_replicas)
            last_rate[e] = arrivals[e] / interval_s
            last_missed[e] = (st.counters[e, C_SLO_MISSED] - missed_ctl[e]) / max(arrivals[e], 1)
            arrivals[e] = 0
            missed_ctl[e] = st.counters[e, C_SLO_MISSED]
            next_control[e] += interval_s
        t = now
        for j in range(J):
            if st.next_arrival[e] >= N:
                break
            t = wl.arrival_s[w, st.next_arrival[e]] * scale
            advance_all(st, wl, eng, e, t, adm, admit_levels, budget_levels, ttft_ema, busy, rep_slo,
                        life, ready_at, up, bill_t, billed_s)
            r = r_act[e, j]
            if life[e, r] != SERVING:  # drained by this step's scaling: the least busy serving one
                alt = _least_outstanding_serving(st, e, life)
                if alt >= 0:
                    r = alt
                    rerouted[e] += 1
            x0 = st.counters[e, C_SLO_MISSED]
            RK.route_one(st, wl, eng, e, r, t, rsent[j])
            rep_slo[e, r] -= st.counters[e, C_SLO_MISSED] - x0  # dropped at a full queue
            arrivals[e] += 1
        if st.next_arrival[e] < N:
            t_next = wl.arrival_s[w, st.next_arrival[e]] * scale
            advance_all(st, wl, eng, e, t_next, adm, admit_levels, budget_levels, ttft_ema, busy, rep_slo,
                        life, ready_at, up, bill_t, billed_s)
            st.clock[e] = t_next
            terminated[e] = False
            truncated[e] = False
        else:
            advance_all(st, wl, eng, e, t + drain_s, adm, admit_levels, budget_levels, ttft_ema, busy,
                        rep_slo, life, ready_at, up, bill_t, billed_s)
            end = t
            empty = True
            for r in range(life.shape[1]):
                end = max(end, st.r_clock[e, r])
                empty = empty and st.n_queued[e, r] == 0 and st.n_running[e, r] == 0
            lifecycle(st, eng, e, end, life, ready_at, up, bill_t, billed_s)
            st.clock[e] = end
            terminated[e] = empty
            truncated[e] = not empty
        control[e] = st.clock[e] >= next_control[e]
        slo_rew[e] = (st.counters[e, C_SLO_MET] - met0) - (st.counters[e, C_SLO_MISSED] - miss0)
        write_all(st, wl, eng, e, J, r_obs, r_mask, up, ttft_ema, rsnap, rsnap_t, rsent, stale_s,
                  hash_blocks, spt, K, a_obs, a_mask, admit_levels, budget_levels.shape[0], s_obs, s_mask,
                  life, control, last_rate, last_missed, cap_rps, max_step, min_replicas)


@nb.njit(cache=True)
def reset_all(st, wl, eng, envs, windows, time_scales, n_initial, life, ready_at, up, bill_t, billed_s,
              control, next_control, arrivals, missed_ctl, last_rate, last_missed, cap_rps, stale_s,
              hash_blocks, spt, ttft_ema, busy, rsnap, rsnap_t, rsent, rerouted, K, r_obs, r_mask, a_obs,
              a_mask, admit_levels, n_budgets, s_obs, s_mask, hist_prior, max_step, min_replicas):
    R = life.shape[1]
    J = r_obs.shape[0]
    for k in range(envs.shape[0]):
        e = envs[k]
        reset_env_state(st, e, windows[k], time_scales[k])
        st.out_hist[e, :] = hist_prior
        t0 = wl.arrival_s[windows[k], 0] * time_scales[k]
        st.clock[e] = t0
        for r in range(R):
            reset_replica(st, eng, e, r)
            st.r_clock[e, r] = t0
            ttft_ema[e, r] = 0.0
            busy[e, r] = 0.0
            ready_at[e, r] = 0.0
            life[e, r] = SERVING if r < n_initial else OFF
            up[e, r] = 1.0 if r < n_initial else 0.0
            for j in range(J):
                rsent[j, e, r] = 0
        for j in range(J):
            rsnap_t[j, e] = -np.inf
        bill_t[e] = t0
        billed_s[e] = 0.0
        control[e] = True
        next_control[e] = t0
        arrivals[e] = 0
        missed_ctl[e] = 0
        last_rate[e] = 0.0
        last_missed[e] = 0.0
        rerouted[e] = 0
        write_all(st, wl, eng, e, J, r_obs, r_mask, up, ttft_ema, rsnap, rsnap_t, rsent, stale_s,
                  hash_blocks, spt, K, a_obs, a_mask, admit_levels, n_budgets, s_obs, s_mask, life,
                  control, last_rate, last_missed, cap_rps, max_step, min_replicas)
