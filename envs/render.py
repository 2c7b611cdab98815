"""Text rendering of a cluster of the shared model (``envs.core``): what ``render_mode="ansi"``
shows for the environments built on it (KVAdmission, Routing)."""

from __future__ import annotations

from envs.core import state as S


def render_replicas(st: S.ClusterState, e: int, capacity_blocks: int, last_reward: float, title: str,
                    up=None) -> str:
    """Env ``e`` of ``st`` as text: clock (s), request counts, last reward, then per replica its
    queue, running batch, KV blocks in use out of ``capacity_blocks`` and prefix-cache entries
    (``up`` [R], optional: 0 marks a replica down)."""
    c = st.counters[e]
    lines = [f"{title}: t = {float(st.clock[e]):.3f} s, arrived {int(c[S.C_ARRIVED])}, finished "
             f"{int(c[S.C_FINISHED])}, dropped {int(c[S.C_DROPPED])}, SLO met {int(c[S.C_SLO_MET])}, "
             f"preemptions {int(c[S.C_PREEMPTIONS])}, last reward {last_reward:.4g}"]
    for r in range(st.n_queued.shape[1]):
        used = capacity_blocks - int(st.free_blocks[e, r])
        state = "" if up is None or up[r] > 0 else "  (down)"
        lines.append(f"  replica {r}: queued {int(st.n_queued[e, r])}, running {int(st.n_running[e, r])}, "
                     f"KV blocks {used}/{capacity_blocks}, prefix-cache entries {int(st.pc_count[e, r])}{state}")
    return "\n".join(lines)
