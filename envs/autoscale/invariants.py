"""Invariants of Autoscale-v0's batch, checked by ``envs.fuzz`` after every control interval and by tests.

Plain numpy over the batch, not on the hot path; only reads the state, so episodes are unchanged.
The rules (``envs.autoscale.kernels``: the fluid model of replica pools):

* fleet within bounds: per GPU type, serving >= 0 and serving + starting within [0, max_replicas];
  a cold start still pending ends after now, a drain still pending too (both are cleared in the
  bin they end); at most as many draining replicas as their slots;
* requests conserved by the fluid model (float tolerance ``RTOL`` relative to the arrivals): the
  arrivals counted equal the trace's arrivals up to now (``scenario.arrivals``), the backlog is
  >= 0, and arrived - backlog (served so far) lies in [0, the capacity integral ``ACC_CAP_S``];
  missed <= arrived; the interval's arrivals equal the trace's over its bins;
* across an interval (:func:`step_violations`, envs whose episode did not end): the clock
  (``step`` x ``interval_s``) advances by one interval; cost, replica-seconds billed, capacity
  and replica integrals, arrivals, misses and cold starts never decrease, and the cost added is
  the interval's cost.
"""

from __future__ import annotations

import numpy as np

from envs.autoscale import kernels as K

RTOL = 1e-9
ACC_NAMES = {K.ACC_COST: "cost", K.ACC_MISSED: "missed requests", K.ACC_ARRIVED: "arrived requests",
             K.ACC_GPU_S: "replica-seconds billed", K.ACC_COLD: "cold starts", K.ACC_CAP_S: "capacity integral",
             K.ACC_REPLICA_S: "serving replica integral"}


def snapshot(vec) -> dict[str, np.ndarray]:
    """What :func:`step_violations` compares across a step (copies): ``step`` [E], ``acc`` [E, N_ACC]."""
    return {"step": vec.state.step.copy(), "acc": vec.state.acc.copy()}


def violations(vec) -> list[str]:
    """Every broken state rule of ``vec`` (an ``AutoscaleVecEnv``) as one line naming the env and
    GPU type; empty when all hold (see the module docstring)."""
    st, sc = vec.state, vec.scenario
    p = sc.pools
    out: list[str] = []
    for e in range(vec.num_envs):
        step = int(st.step[e])
        now = step * p.interval_s
        if not 0 <= step <= vec.n_steps:
            out.append(f"env {e}: step {step} outside [0, {vec.n_steps}]")
        for g in range(vec.G):
            where = f"env {e} type {g}"
            serving = int(st.serving[e, g])
            pend = st.ready_at[e, g][np.isfinite(st.ready_at[e, g])]
            drain = st.drain_end[e, g][np.isfinite(st.drain_end[e, g])]
            if serving < 0 or not serving + pend.size <= int(p.max_n[g]):
                out.append(f"{where}: serving {serving} + starting {pend.size} outside [0, max_replicas "
                           f"{int(p.max_n[g])}]")
            if (pend < now - 1e-9).any() or (drain <= now - 1e-9).any():
                out.append(f"{where}: a cold start or drain ended before now ({now} s) still pending")
            if np.isposinf(st.drain_end[e, g]).any() or np.isneginf(st.ready_at[e, g]).any():
                out.append(f"{where}: a cold start at -inf or a drain at +inf")
        acc = st.acc[e]
        w = int(st.window[e])
        bins = step * p.bins_per_step
        trace = float(sc.arrivals[w, :bins].sum())
        tol = RTOL * max(trace, 1.0)
        arrived, Q, missed = acc[K.ACC_ARRIVED], float(st.Q[e]), acc[K.ACC_MISSED]
        if abs(arrived - trace) > tol:
            out.append(f"env {e}: arrived {arrived!r} != the trace's {trace!r} over {bins} bins")
        if not Q >= 0 or not -tol <= arrived - Q <= acc[K.ACC_CAP_S] + tol:
            out.append(f"env {e}: backlog {Q!r}, served arrived - backlog {arrived - Q!r} outside [0, capacity "
                       f"integral {acc[K.ACC_CAP_S]!r}]")
        if not -tol <= missed <= arrived + tol:
            out.append(f"env {e}: missed {missed!r} outside [0, arrived {arrived!r}]")
        if step > 0:
            last = float(sc.arrivals[w, bins - p.bins_per_step:bins].sum())
            if abs(st.iv[e, K.IV_ARRIVED] - last) > RTOL * max(last, 1.0):
                out.append(f"env {e}: the interval's arrivals {st.iv[e, K.IV_ARRIVED]!r} != the trace's {last!r}")
        if (acc < -tol).any():
            out.append(f"env {e}: negative accumulators {acc.tolist()}")
    return out


def step_violations(vec, before: dict[str, np.ndarray], live: np.ndarray) -> list[str]:
    """Rules across one control interval for the envs in ``live`` [E] bool (episode not ended
    in it); ``before``: :func:`snapshot` before the step."""
    st = vec.state
    out: list[str] = []
    wrong = live & (st.step != before["step"] + 1)
    if wrong.any():
        e = int(np.argmax(wrong))
        out.append(f"env {e}: clock went from interval {int(before['step'][e])} to {int(st.step[e])}, not one on")
    d = st.acc - before["acc"]
    for j, name in ACC_NAMES.items():
        back = live & (d[:, j] < 0)
        if back.any():
            e = int(np.argmax(back))
            out.append(f"env {e}: {name} decreased from {before['acc'][e, j]!r} to {st.acc[e, j]!r}")
    off = live & ~np.isclose(d[:, K.ACC_COST], st.iv[:, K.IV_COST], rtol=1e-9, atol=1e-12)
    if off.any():
        e = int(np.argmax(off))
        out.append(f"env {e}: cost added {d[e, K.ACC_COST]!r} != the interval's cost {st.iv[e, K.IV_COST]!r}")
    return out
