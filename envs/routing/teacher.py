"""Routing-v0's privileged teacher: each candidate replica's exact outcome, replayed in isolation.

For the pending request the teacher copies the env's state into a scratch batch of 2R rows and, for
every replica r, plays replica r alone (row r with the request joined, row R + r without it) from
now with no later arrival, using the true output lengths the router never sees (the simulation's
own ``run_iteration``: vLLM FCFS, chunked prefill, preemption, prefix cache). Replicas are
independent between arrivals, so a row's other replicas stay frozen and cancel out of every
difference between its two rows. Two rules:

* ``"ttft"``: the replica giving this request its first token soonest (least work in the sense of
  time to first token: prefill after this replica's prefix hit for it, behind the exact queued and
  running work there, in the step-time model's seconds);
* ``"marginal"`` (the default): the replica where adding the request costs the fewest SLO outcomes,
  the reward delta of the two rows over ``horizon_s`` (requests met - missed - the TTFT tail-bound
  charge, as ``envs.routing.kernels.step_all`` rewards them), so a long prompt is not sent where its
  prefill chunks would push running decodes past the TPOT SLO; ties (equal deltas) go to the
  soonest first token, then the lowest index.

With ``lengths="predicted"`` or ``"sampled"`` (``RoutingConfig.teacher_lengths``) the env replays on
``envs.routing.predicted.believed_window`` instead: every output length replaced by what a router can
predict from the request's bucket and the tokens it has generated (its conditional mean, or draws
whose outcomes are averaged; issue 21's test of whether the teacher's edge is the true lengths: on
the code family the sampled lengths keep most of it, the mean lengths lose it).

Privileged like PrefixEviction-v0's Belady teacher: it reads the future (output lengths, completion
times), labels imitation targets and serves as a bound-like reference policy, never the observation.
It ignores arrivals after the pending one (myopic), so it is a strong policy, not an oracle.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import state as S
from envs.core.replica import ORDER_FCFS, enqueue, mark_late_queued, run_iteration
from envs.core.state import C_SLO_MET, C_SLO_MISSED, DROPPED, FAILED, REJECTED

MODES = ("marginal", "ttft")
DEFAULT_MODE = "marginal"
# The output lengths replayed: "true" (the privileged default) or "predicted" (envs.routing.predicted:
# what a router can know from the predicted bucket and the tokens generated so far).
# "sampled": the outcomes averaged over draws of the lengths from the bucket's distribution.
LENGTHS = ("true", "predicted", "sampled")

# ClusterState fields of one env (copied whole to every scratch row); the rest are per replica.
PER_ENV_FIELDS = ("window", "time_scale", "next_arrival", "clock", "counters", "accum", "out_hist", "fate",
                  "ttft", "e2e", "tbt_p99", "tpot", "slo_met", "gap_heap")
# Scratch fields (``S.SCRATCH_FIELDS``) are allocated in every row and never copied: they hold no state.
PER_REPLICA_FIELDS = tuple(f for f in S.ClusterState._fields if f not in PER_ENV_FIELDS and f not in S.SCRATCH_FIELDS)


def scratch_like(st: S.ClusterState) -> S.ClusterState:
    """A zeroed state of 2R envs with ``st``'s dimensions (the teacher's replay rows)."""
    R = st.n_queued.shape[1]
    return S.ClusterState(**{f: np.zeros((2 * R, *getattr(st, f).shape[1:]), getattr(st, f).dtype)
                             for f in S.ClusterState._fields})


def load_rows(scratch: S.ClusterState, st: S.ClusterState, e: int) -> None:
    """Copy env ``e`` of ``st`` into every row of ``scratch``: row j holds replica j % R (and the env's
    per-request records); the other replicas of a row are not copied (they are never played)."""
    R = st.n_queued.shape[1]
    rows = np.arange(2 * R)
    reps = rows % R
    for f in PER_ENV_FIELDS:
        getattr(scratch, f)[:] = getattr(st, f)[e]
    for f in PER_REPLICA_FIELDS:
        getattr(scratch, f)[rows, reps] = getattr(st, f)[e, reps]


@nb.njit(cache=True, nogil=True)
def _bound_excess(sc, wl, j, now, bound_s):
    """Seconds of TTFT beyond ``bound_s`` of row ``j``'s arrived requests at ``now`` (a request
    still waiting counts its wait so far), as ``envs.routing.kernels.ttft_excess`` charges them."""
    w = sc.window[j]
    scale = sc.time_scale[j]
    total = 0.0
    for q in range(sc.next_arrival[j]):
        f = sc.fate[j, q]
        if f == DROPPED or f == FAILED or f == REJECTED:
            continue
        t = sc.ttft[j, q]
        if t == t:
            total += max(t - bound_s, 0.0)
        else:
            total += max(now - wl.arrival_s[w, q] * scale - bound_s, 0.0)
    return total


@nb.njit(cache=True, nogil=True)  # nogil: threads replay different envs at once (RoutingConfig.teacher_threads)
def play_candidates(sc, wl, eng, i, budget, horizon_s, first_token_only, bound_s, bound_penalty, busy, out):
    """Play the 2R rows of ``sc`` (``load_rows``): row r < R gets request ``i`` at replica r, then
    replica r runs alone (vLLM FCFS under ``budget``) until it is idle or ``horizon_s`` past the
    arrival (``first_token_only``: rows < R stop at the request's first token; rows >= R are not
    played). ``out`` [2R, 2] float64: per row the reward it accrued (SLO met - missed -
    ``bound_penalty`` x TTFT beyond ``bound_s`` / ``bound_s``, counted from the copied state) and the
    request's TTFT (s; inf if none within the horizon or it was not queued). ``busy`` [2R, R] float64:
    scratch the iteration loop adds busy time to."""
    R2 = sc.window.shape[0]
    R = R2 // 2
    w = sc.window[0]
    t = wl.arrival_s[w, i] * sc.time_scale[0]
    until = t + horizon_s
    for j in range(R2):
        r = j % R
        out[j, 1] = np.inf
        if j >= R and first_token_only:
            out[j, 0] = 0.0
            continue
        if j < R:
            if sc.n_queued[j, r] == 0 and sc.n_running[j, r] == 0 and sc.r_clock[j, r] < t:
                sc.r_clock[j, r] = t
            enqueue(sc, wl, eng, j, r, i)
            sc.next_arrival[j] = i + 1
        else:
            sc.next_arrival[j] = i  # the request never arrived in this row
        if first_token_only:  # one iteration at a time, to stop at the request's first token
            stuck = 0
            while sc.r_clock[j, r] < until and (sc.n_queued[j, r] != 0 or sc.n_running[j, r] != 0):
                if sc.ttft[j, i] == sc.ttft[j, i]:
                    break
                dt = run_iteration(sc, wl, eng, j, r, eng.max_seqs, budget, False, ORDER_FCFS, sc.r_clock[j, r])
                stuck = stuck + 1 if dt == 0.0 else 0
                if stuck > 2:
                    break
        else:  # the core's iteration loop up to the horizon (one call: issue 16's fast path)
            run_iteration(sc, wl, eng, j, r, eng.max_seqs, budget, False, ORDER_FCFS, sc.r_clock[j, r], until, busy)
        now = min(sc.r_clock[j, r], until)
        mark_late_queued(sc, wl, eng, j, r, now)
        rew = float(sc.counters[j, C_SLO_MET] - sc.counters[j, C_SLO_MISSED])
        if bound_penalty > 0.0:
            rew -= bound_penalty * _bound_excess(sc, wl, j, until, bound_s) / bound_s
        out[j, 0] = rew
        if j < R and sc.ttft[j, i] == sc.ttft[j, i]:
            out[j, 1] = sc.ttft[j, i]


def choose(out: np.ndarray, legal: np.ndarray, mode: str) -> int:
    """The teacher's replica from ``play_candidates``' ``out`` [2R, 2] among ``legal`` [R] (bool):
    ``"ttft"`` the soonest first token; ``"marginal"`` the largest reward delta (with - without),
    ties to the soonest first token; then the lowest index. ``ValueError`` for an unknown mode."""
    R = legal.shape[0]
    ttft = out[:R, 1]
    if mode == "ttft":
        keys = (np.arange(R), ttft)
    elif mode == "marginal":
        delta = np.round(out[:R, 0] - out[R:, 0], 9)  # float noise of the bound charge is no preference
        keys = (np.arange(R), ttft, -delta)
    else:
        raise ValueError(f"Routing teacher: mode must be one of {', '.join(MODES)}, got {mode!r}")
    order = np.lexsort(keys)  # last key first
    for r in order:
        if legal[r]:
            return int(r)
    return int(order[0])  # nothing legal (every replica down or full): any index drops it


def targets(out: np.ndarray, legal: np.ndarray, slack_s: float) -> np.ndarray:
    """The replicas the ``"marginal"`` rule accepts [R] (bool), from ``play_candidates``' ``out``
    [2R, 2] among ``legal`` [R]: the best reward delta, and a first token within ``slack_s`` (s) of
    the soonest among those; always holds ``choose(out, legal, "marginal")``."""
    R = legal.shape[0]
    good = np.zeros(R, bool)
    pick = choose(out, legal, "marginal")
    good[pick] = True
    if not legal.any():
        return good
    delta = np.round(out[:R, 0] - out[R:, 0], 9)
    best = legal & (delta == delta[pick])
    ttft = out[:R, 1]
    if np.isfinite(ttft[pick]):
        best &= ttft <= ttft[pick] + slack_s
    else:
        best &= ~np.isfinite(ttft)
    return good | best
