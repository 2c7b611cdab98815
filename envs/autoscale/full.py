"""The fluid model of Autoscale-v0 against the full cluster model, on the same arrivals.

Command line (it needs a policy, so it lives with the policies): ``python -m
agents.autoscale_fidelity [--policy hpa] [--day 0] [--start-h 7] [--hours 2] [--json FILE]``.

A policy plays a held-out day in the env (the fluid model); every replica change it makes is
recorded (serving replicas per type over time, cold starts included). The same requests of that
day (the generator's own arrival times and lengths) are then served by the full cluster model
(``envs.core``: every replica a vLLM-style engine with continuous batching, paged KV, chunked
prefill at its type's budget, per-request TTFT and p99 TBT), behind a least-loaded router
(fewest outstanding requests among replicas taking requests; a removed replica takes no new
requests and finishes its running ones) replaying that replica schedule. Both report SLO
attainment and TTFT p99 of the requests arriving in the measured span (the full model starts ten
minutes earlier so that its replicas are loaded when the span begins).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

import traces
from envs.autoscale import env as asc
from envs.autoscale import kernels as K
from envs.core import state as S
from envs.core.engine import EngineSpec
from envs.core.replica import (
    ORDER_FCFS,
    enqueue,
    reset_env_state,
    reset_replica,
    run_iteration,
)
from envs.metrics import percentile

WARMUP_S = 600.0


@nb.njit(cache=True)
def serve_cluster(st, wl, engs, budgets, rep_type, rep_rank, sched, sched_dt):
    """Serve window 0 of ``wl`` on env 0's replicas; replica r (of type rep_type[r], rank
    rep_rank[r] within its type) takes new requests while rep_rank[r] < sched[t // sched_dt, g]."""
    R = rep_type.shape[0]
    reset_env_state(st, 0, 0, 1.0)
    for r in range(R):
        reset_replica(st, engs[rep_type[r]], 0, r)
    busy = np.zeros(R)
    arr = wl.arrival_s[0]
    N = wl.n_requests[0]
    T = sched.shape[0]
    i = 0
    while True:
        t_rep = np.inf
        rr = -1
        for r in range(R):
            if st.n_running[0, r] + st.n_queued[0, r] > 0 and busy[r] < t_rep:
                t_rep = busy[r]
                rr = r
        t_arr = arr[i] if i < N else np.inf
        if rr < 0 and t_arr == np.inf:
            break
        if t_arr <= t_rep:
            # Route at the arrival, or at the first moment a replica takes requests.
            b = min(int(t_arr // sched_dt), T - 1)
            while True:
                best = -1
                best_load = 0
                for r in range(R):
                    if rep_rank[r] < sched[b, rep_type[r]]:
                        load = st.n_running[0, r] + st.n_queued[0, r]
                        if best < 0 or load < best_load:
                            best, best_load = r, load
                if best >= 0 or b == T - 1:
                    break
                b += 1
            if best < 0:
                raise RuntimeError("serve_cluster: no replica takes requests until the end")
            t_disp = max(t_arr, b * sched_dt)
            if t_disp > t_arr and t_disp > t_rep:
                # Replicas run until the router can dispatch (keep time order).
                dt = run_iteration(st, wl, engs[rep_type[rr]], 0, rr, engs[rep_type[rr]].max_seqs,
                                   budgets[rep_type[rr]], False, ORDER_FCFS, t_rep)
                busy[rr] = t_rep + dt if dt > 0.0 else np.inf
                continue
            if st.n_running[0, best] + st.n_queued[0, best] == 0:
                busy[best] = max(busy[best], t_disp)
            enqueue(st, wl, engs[rep_type[best]], 0, best, i)
            i += 1
        else:
            g = rep_type[rr]
            dt = run_iteration(st, wl, engs[g], 0, rr, engs[g].max_seqs, budgets[g], False,
                               ORDER_FCFS, t_rep)
            if dt == 0.0:
                raise RuntimeError("serve_cluster: a replica cannot schedule its requests")
            busy[rr] = t_rep + dt


# A factory of the policy that plays the day: called with the one-env AutoscaleVecEnv it acts
# in, returns an object with ``act(obs [1, F], action_mask [1, A]) -> actions [1]``.
PolicyFactory = Callable[[asc.AutoscaleVecEnv], Any]


def record_schedule(make_policy: PolicyFactory, day: int, env_kwargs: dict) -> dict:
    """Play ``day`` of the held-out split with the policy ``make_policy(vec)``; per-second serving
    replicas per type, and the fluid model's per-interval arrivals/misses and TTFT histograms at
    every decision."""
    vec = asc.AutoscaleVecEnv(1, seed=0, split="test", **env_kwargs)
    vec.set_options({"window": int(day), "slo_penalty": vec.config.penalties()[0]})
    obs = vec.reset()
    policy = make_policy(vec)
    p, st = vec.scenario.pools, vec.state
    n = vec.n_steps
    sec = round(vec.config.interval_s)
    sched = np.zeros((n * sec, vec.G), np.int64)
    arrived = np.zeros(n)
    missed = np.zeros(n)
    hists = np.zeros((n + 1, K.H_BINS + 1))
    deltas = np.empty(vec.G, np.int64)
    for k in range(n):
        a = np.asarray(policy.act(obs, vec.action_masks()))
        K.decode_action(int(a[0]), vec.G, p.max_step, deltas)
        probe = K.AState(*(x.copy() for x in st))
        t0 = k * vec.config.interval_s
        K.apply_deltas(p, probe, 0, deltas, t0)
        ts = t0 + np.arange(sec)
        ready = probe.ready_at[0]
        sched[k * sec:(k + 1) * sec] = probe.serving[0][None, :] + (ready[None, :, :] <= ts[:, None, None]).sum(2)
        hists[k] = st.ttft_hist[0]
        obs, _, _, _ = vec.step(a)
        arrived[k] = st.iv[0, K.IV_ARRIVED]
        missed[k] = st.iv[0, K.IV_MISSED]
    # The last step reset the env; its histogram is in the metrics path, not needed here.
    return {"vec": vec, "sched": sched, "arrived": arrived, "missed": missed, "hists": hists,
            "window": int(day)}


def compare(make_policy: PolicyFactory, policy_name: str, day: int = 0, start_h: float = 7.0,
            hours: float = 2.0, env_kwargs: dict | None = None) -> dict:
    """Fluid model against full model on hours ``start_h`` .. ``start_h + hours`` of held-out
    ``day`` under the policy ``make_policy(vec)`` (named ``policy_name`` in the result): SLO
    attainment and TTFT p99 (s) of both, their difference and the per-interval attainment MAE.
    Raises ``ValueError`` when the span is outside the episode or ``rate_scale != 1``."""
    kw = dict(env_kwargs or {})
    rec = record_schedule(make_policy, day, kw)
    vec = rec["vec"]
    cfg, sc = vec.config, vec.scenario
    iv = cfg.interval_s
    k0, k1 = round(start_h * 3600 / iv), round((start_h + hours) * 3600 / iv)
    if not 0 <= k0 < k1 <= vec.n_steps:
        raise ValueError(f"span {start_h} h + {hours} h is outside the episode")
    fl_att = 1.0 - rec["missed"][k0:k1].sum() / rec["arrived"][k0:k1].sum()
    fl_ttft99 = K.hist_percentile(rec["hists"][k1] - rec["hists"][k0], 99)
    per_iv_fluid = 1.0 - rec["missed"][k0:k1] / np.maximum(rec["arrived"][k0:k1], 1e-9)

    # The same requests, served by the full model.
    name = asc.DEFAULT_TRACE if cfg.trace == "default" else cfg.trace
    rate = asc.DEFAULT_RATE_RPS if cfg.rate_rps is None else cfg.rate_rps
    seed = cfg.trace_seed + asc.TEST_SEED_OFFSET + day
    tr = traces.load_trace(name, seed=seed, duration_s=cfg.episode_s, rate_rps=rate, **dict(cfg.trace_params))
    t_lo, t0, t1 = max(k0 * iv - WARMUP_S, 0.0), k0 * iv, k1 * iv
    sel = (tr.arrival_s >= t_lo) & (tr.arrival_s < t1)
    arrival = np.asarray(tr.arrival_s)[sel] - t_lo
    prompt = np.asarray(tr.prompt_tokens)[sel]
    output = np.asarray(tr.output_tokens)[sel]
    if cfg.rate_scale != 1.0:
        raise ValueError("compare: rate_scale != 1 has no request-level equivalent here")
    n = len(arrival)
    wl = S.Workload(arrival_s=arrival[None, :].astype(np.float64), prompt=prompt[None, :].astype(np.int32),
                    output=output[None, :].astype(np.int32), pred_bucket=np.zeros((1, n), np.int8),
                    n_requests=np.array([n], np.int32), chain_ids=np.full((1, n, 1), -1, np.int64),
                    chain_len=np.zeros((1, n), np.int16),
                    failed=(np.zeros(n, np.bool_) if tr.failed is None else np.asarray(tr.failed)[sel])[None, :])
    types = cfg.types()
    engs = tuple(EngineSpec(model=cfg.model, gpu=g, tp=cfg.tp, slo_ttft_s=cfg.slo_ttft_s,
                            slo_tpot_s=cfg.slo_tpot_s, slo_metric=cfg.slo_metric).build()._replace(max_output=int(output.max()))
                 for g in types)
    budgets = np.array([c.budget for c in sc.curves], np.int64)
    sched = rec["sched"][int(t_lo):int(t1)]
    R_g = sched.max(0)
    rep_type = np.concatenate([np.full(r, g, np.int64) for g, r in enumerate(R_g)])
    rep_rank = np.concatenate([np.arange(r, dtype=np.int64) for r in R_g])
    st = S.allocate(1, len(rep_type), 4096, n, 1)
    t = time.perf_counter()
    serve_cluster(st, wl, engs, budgets, rep_type, rep_rank, sched, 1.0)
    wall = time.perf_counter() - t
    meas = arrival >= t0 - t_lo
    met = st.slo_met[0][meas] & (st.fate[0][meas] == S.FINISHED)
    full_att = float(met.mean())
    full_ttft99 = percentile(st.ttft[0][meas], 99)
    # Per-interval attainment of the full model, for the error distribution.
    k_of = ((arrival[meas] + t_lo) // iv).astype(np.int64) - k0
    per_iv_full = np.bincount(k_of, met, minlength=k1 - k0) / np.maximum(np.bincount(k_of, minlength=k1 - k0), 1)
    return {
        "policy": policy_name, "day": day, "start_h": start_h, "hours": hours,
        "requests": int(meas.sum()), "replicas_max": R_g.tolist(), "gpu_types": list(types),
        "fluid": {"slo_attainment": float(fl_att), "ttft_p99_s": float(fl_ttft99)},
        "full": {"slo_attainment": full_att, "ttft_p99_s": float(full_ttft99), "wall_s": wall},
        "attainment_error": float(fl_att - full_att),
        "interval_attainment_mae": float(np.mean(np.abs(per_iv_fluid - per_iv_full))),
    }

