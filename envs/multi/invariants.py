"""Invariants of the multi-agent cluster (``envs.multi.env.MultiCluster``), checked by ``envs.fuzz``
after every joint step and by tests. Plain numpy over the whole batch, not on the hot path; only
reads the state (the episodes' results are unchanged).

The cluster model's own rules (``envs.core.invariants.violations``, with iterations in flight:
routers decide while replicas are busy, as in Routing-v0) hold per replica; on top of them the
rules of routing by several routers and of the autoscaler's replica lifecycle
(``envs.multi.kernels``: OFF -> STARTING -> SERVING -> DRAINING -> OFF):

* every request the routers consumed (``next_arrival``) was counted arrived exactly once
  (``C_ARRIVED == next_arrival``), never more than the window holds, and a request not yet
  consumed has no fate;
* no request sits on an OFF or STARTING replica (a cold-started replica begins with an empty
  queue and KV pool, ``reset_replica``: a request there would be lost, breaking conservation
  later); ``up`` (the routers' serving flag) is 1 exactly on SERVING replicas;
* the fleet the autoscaler controls (STARTING + SERVING) is within [``min_replicas``, R] and at
  least one replica serves;
* replica-seconds billed and requests rerouted never decrease within an episode
  (:func:`step_violations`, given the values before the step), the env clock never runs
  backward, nor does the clock of a replica that was SERVING or DRAINING before and after the
  step (a cold-started replica's clock restarts at its ready time by design).
"""

from __future__ import annotations

import numpy as np

from envs.core import invariants as CI
from envs.core import state as S
from envs.multi import kernels as MK

LIFE = {MK.OFF: "OFF", MK.STARTING: "STARTING", MK.SERVING: "SERVING", MK.DRAINING: "DRAINING"}


def snapshot(core) -> dict[str, np.ndarray]:
    """The per-env quantities :func:`step_violations` compares across a step (copies):
    ``clock`` [E] s, ``r_clock`` [E, R] s, ``life`` [E, R], ``billed_s`` [E] replica-s,
    ``rerouted`` [E]."""
    return {"clock": core.state.clock.copy(), "r_clock": core.state.r_clock.copy(), "life": core.life.copy(),
            "billed_s": core.billed_s.copy(), "rerouted": core.rerouted.copy()}


def violations(core) -> list[str]:
    """Every broken state rule of ``core`` (a :class:`~envs.multi.env.MultiCluster`) as one line
    naming the env and replica; empty when all hold (see the module docstring)."""
    st, sc, cfg = core.state, core.scenario, core.config
    out = CI.violations(st, int(sc.engine.capacity_blocks), int(sc.engine.block_size), in_flight_iterations=True)
    R = core.R
    for e in range(core.num_envs):
        arrived = int(st.counters[e, S.C_ARRIVED])
        consumed = int(st.next_arrival[e])
        n_window = int(sc.workload.n_requests[st.window[e]])
        if arrived != consumed:
            out.append(f"env {e}: arrived counter {arrived} != requests the routers consumed {consumed}")
        if consumed > n_window:
            out.append(f"env {e}: {consumed} requests routed of a window of {n_window}")
        if np.any(st.fate[e, consumed:] != S.PENDING):
            out.append(f"env {e}: a request not yet routed has a fate")
        life = core.life[e]
        for r in range(R):
            if life[r] not in LIFE:
                out.append(f"env {e} replica {r}: unknown lifecycle state {int(life[r])}")
                continue
            held = int(st.n_queued[e, r] + st.n_running[e, r])
            if life[r] in (MK.OFF, MK.STARTING) and held:
                out.append(f"env {e} replica {r}: {held} requests on a {LIFE[int(life[r])]} replica")
            if (core.up[e, r] == 1.0) != (life[r] == MK.SERVING) or core.up[e, r] not in (0.0, 1.0):
                out.append(f"env {e} replica {r}: up {float(core.up[e, r])} but {LIFE[int(life[r])]}")
        fleet = int(((life == MK.STARTING) | (life == MK.SERVING)).sum())
        if not cfg.min_replicas <= fleet <= R:
            out.append(f"env {e}: fleet {fleet} outside [min_replicas {cfg.min_replicas}, replicas {R}]")
        if not (life == MK.SERVING).any():
            out.append(f"env {e}: no SERVING replica")
        if not core.billed_s[e] >= 0.0 or core.rerouted[e] > consumed:
            out.append(f"env {e}: billed {float(core.billed_s[e])} replica-s < 0 or rerouted "
                       f"{int(core.rerouted[e])} > routed {consumed}")
    return out


def step_violations(core, before: dict[str, np.ndarray], live: np.ndarray) -> list[str]:
    """Rules across one step of the envs in ``live`` [E] bool (those whose episode did not end
    or restart in it), ``before`` being :func:`snapshot` taken before the step."""
    st = core.state
    out: list[str] = []
    for name, key, now in (("clock", "clock", st.clock), ("billed replica-seconds", "billed_s", core.billed_s),
                           ("rerouted requests", "rerouted", core.rerouted)):
        back = live & (now < before[key])
        if back.any():
            e = int(np.argmax(back))
            out.append(f"env {e}: {name} ran backward from {before[key][e]!r} to {now[e]!r}")
    kept = ((before["life"] == MK.SERVING) | (before["life"] == MK.DRAINING)) & (
        (core.life == MK.SERVING) | (core.life == MK.DRAINING))
    r_back = live[:, None] & kept & (st.r_clock < before["r_clock"])
    if r_back.any():
        e, r = (int(i) for i in np.argwhere(r_back)[0])
        out.append(f"env {e} replica {r}: clock ran backward from {before['r_clock'][e, r]!r} to "
                   f"{st.r_clock[e, r]!r}")
    return out
