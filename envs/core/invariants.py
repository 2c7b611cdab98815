"""Invariants of the cluster model, checked by tests on random traces and random actions.

Plain numpy over the whole state (not on the hot path): returns the list of violations so a
failing test says exactly which env, replica and slot broke which rule.
"""

from __future__ import annotations

import numpy as np

from envs.core import state as S


def violations(st: S.ClusterState, capacity_blocks: int, block_size: int,
               in_flight_iterations: bool = False) -> list[str]:
    """Every broken rule of ``st`` as one line naming env, replica and slot.

    ``in_flight_iterations``: the environment decides while replicas are busy (Routing-v0, the
    multi-agent cluster: each replica runs the iterations that *start* before the decision, so
    the one in flight ends after it, as in a real engine); then a replica clock ahead of the
    env clock is not a violation (``envs.fuzz`` checks instead that replica clocks never run
    backward). With one replica stepped iteration by iteration (KVAdmission-v0) it is."""
    out: list[str] = []
    E, R, _ = st.status.shape
    for e in range(E):
        c = st.counters[e]
        in_flight = int(st.n_queued[e].sum() + st.n_running[e].sum())
        ended = c[S.C_FINISHED] + c[S.C_DROPPED] + c[S.C_FAILED] + c[S.C_REJECTED]
        if c[S.C_ARRIVED] != in_flight + ended:
            out.append(
                f"env {e}: arrived {c[S.C_ARRIVED]} != queued+running {in_flight} + finished "
                f"{c[S.C_FINISHED]} + dropped {c[S.C_DROPPED]} + failed {c[S.C_FAILED]} + rejected "
                f"{c[S.C_REJECTED]}"
            )
        if c[S.C_SLO_MET] + c[S.C_SLO_MISSED] > c[S.C_ARRIVED]:
            out.append(f"env {e}: met {c[S.C_SLO_MET]} + missed {c[S.C_SLO_MISSED]} > arrived")
        fate = st.fate[e]
        if any((fate == f).sum() != c[k] for f, k in ((S.FINISHED, S.C_FINISHED), (S.DROPPED, S.C_DROPPED),
                                                      (S.FAILED, S.C_FAILED), (S.REJECTED, S.C_REJECTED))):
            out.append(f"env {e}: per-request fates disagree with the counters")
        for r in range(R):
            status = st.status[e, r]
            running = np.flatnonzero(status == S.RUNNING)
            queued = np.flatnonzero(status == S.QUEUED)
            n_run = int(st.n_running[e, r])
            if len(running) != n_run or len(queued) != st.n_queued[e, r]:
                out.append(f"env {e} replica {r}: slot statuses disagree with n_running/n_queued")
            listed = st.run_list[e, r, :n_run]
            if sorted(listed.tolist()) != sorted(running.tolist()):
                out.append(f"env {e} replica {r}: run_list {listed.tolist()} != running slots")
            used = int(st.blocks[e, r, running].sum())
            free = int(st.free_blocks[e, r])
            if free < 0 or used + free != capacity_blocks:
                out.append(
                    f"env {e} replica {r}: used {used} + free {free} blocks != capacity {capacity_blocks}"
                )
            if st.blocks[e, r, queued].any():
                out.append(f"env {e} replica {r}: a queued request holds KV blocks")
            need = -(-st.kv_tokens[e, r, running] // block_size)
            if (st.blocks[e, r, running] < need).any():
                s = int(running[np.argmax(st.blocks[e, r, running] < need)])
                out.append(f"env {e} replica {r} slot {s}: KV tokens exceed the blocks it holds")
            if (st.kv_tokens[e, r, running] > st.target[e, r, running] + st.generated[e, r, running]).any():
                out.append(f"env {e} replica {r}: KV tokens beyond prompt + generated")
            if not in_flight_iterations and st.r_clock[e, r] > st.clock[e] + 1e-9:
                out.append(f"env {e} replica {r}: replica clock ahead of the env clock")
    return out
