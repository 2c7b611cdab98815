"""Invariants of Disaggregation-v0's batch, checked by tests and by ``envs.fuzz`` after every step.

The cluster model's own checks (``envs.core.invariants``) do not apply as they are: a request whose
prefill is done keeps its KV blocks on the prefill instance (``HELD``, then ``SENDING``) while the
decode instance reserves blocks for it (``INCOMING``), so a slot may hold blocks without running.
These are the same rules restated for that handover (DESIGN.md, "The vectorized cluster model"):
request conservation, KV blocks in use + free = capacity with free >= 0, slot statuses that agree
with the counts, and a request in at most one place. Plain numpy, not on the hot path.
"""

from __future__ import annotations

import numpy as np

from envs.core import state as S
from envs.disaggregation import kernels as K


def violations(vec) -> list[str]:
    """Every broken rule of ``vec`` (a :class:`~envs.disaggregation.env.DisaggregationVecEnv`) as one
    line naming the env and instance; empty when all hold. Reads ``vec.state`` (lazy decoders
    written back, which leaves the results unchanged) and ``vec.dstate``.

    Per env: every arrived request (``next_arrival``: the dispatcher consumes arrivals in order) is
    in exactly one instance slot (queued, running, held, sending) or has ended (finished, dropped,
    failed, rejected), never both; no request past ``next_arrival`` has a fate; transfers in flight
    (``n_xf``) equal the decode sides' incoming slots and do not exceed the held ones; no more
    arrivals than the episode's window holds. Per instance:
    free blocks >= 0 and used + free = ``capacity_blocks``; queued / running / held + sending /
    incoming slots equal ``n_queued`` / ``n_running`` / ``n_held`` / ``n_incoming``."""
    st, ds = vec.state, vec.dstate
    cap = int(vec.scenario.engine.capacity_blocks)
    out: list[str] = []
    ended_fates = (S.FINISHED, S.DROPPED, S.FAILED, S.REJECTED)
    for e in range(vec.num_envs):
        in_system: set[int] = set()
        for r in range(vec.R):
            where = f"env {e} instance {r}"
            status = st.status[e, r]
            held = (status == K.HELD) | (status == K.SENDING)
            free = int(st.free_blocks[e, r])
            used = int(st.blocks[e, r][status != S.FREE].sum())
            if free < 0 or used + free != cap:
                out.append(f"{where}: used {used} + free {free} blocks != capacity {cap}")
            for name, n_slots, count in (("queued", (status == S.QUEUED).sum(), st.n_queued[e, r]),
                                         ("running", (status == S.RUNNING).sum(), st.n_running[e, r]),
                                         ("held", held.sum(), ds.n_held[e, r]),
                                         ("incoming", (status == K.INCOMING).sum(), ds.n_incoming[e, r])):
                if int(n_slots) != int(count):
                    out.append(f"{where}: {int(n_slots)} {name} slots != its count {int(count)}")
            mine = set(st.req[e, r][(status == S.QUEUED) | (status == S.RUNNING) | held].tolist())
            if mine & in_system:
                out.append(f"{where}: requests {sorted(mine & in_system)} also on another instance")
            in_system |= mine
        arrived = int(st.next_arrival[e])
        n_window = int(vec.scenario.workload.n_requests[st.window[e]])
        if arrived > n_window:
            out.append(f"env {e}: {arrived} requests arrived of a window of {n_window}")
        ended = set(np.flatnonzero(np.isin(st.fate[e, :arrived], ended_fates)).tolist())
        if ended & in_system:
            out.append(f"env {e}: requests {sorted(ended & in_system)[:5]} ended and still on an instance")
        if len(ended | in_system) != arrived:
            out.append(f"env {e}: arrived {arrived} != on an instance {len(in_system)} + ended {len(ended)}")
        if np.any(st.fate[e, arrived:] != S.PENDING):
            out.append(f"env {e}: a request not yet arrived has a fate")
        if ds.n_xf[e] != ds.n_incoming[e].sum() or ds.n_xf[e] > ds.n_held[e].sum():
            out.append(f"env {e}: transfers in flight {int(ds.n_xf[e])} != incoming {int(ds.n_incoming[e].sum())} "
                       f"or > held {int(ds.n_held[e].sum())}")
    return out
