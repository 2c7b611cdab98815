"""A replica's measured capacity: the request rate it sustains when never idle.

Load levels are fractions of this figure, so "load 1.1" means the same overload on any GPU,
model or trace. It is measured, not derived: every window of the workload arrives at once and
the replica serves it under vLLM's default scheduling (admit all that fit, 8192-token budget);
capacity is the completion rate between the 10th and 90th percentile completions, which leaves
out the ramp-up and the tail where the batch drains.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import state as S
from envs.core.engine import Engine
from envs.core.replica import ORDER_FCFS, enqueue, reset_env_state, reset_replica, run_iteration

VLLM_BUDGET = 8192  # vLLM max_num_batched_tokens for online serving on >= 70 GiB GPUs


@nb.njit(cache=True)
def _saturated_finish_times(st, wl, eng, budget):
    E = st.window.shape[0]
    for e in range(E):
        reset_env_state(st, e, e, 0.0)
        reset_replica(st, eng, e, 0)
        N = wl.n_requests[e]
        for i in range(N):
            enqueue(st, wl, e, 0, i)
        st.next_arrival[e] = N
        now = 0.0
        while st.n_running[e, 0] + st.n_queued[e, 0] > 0:
            dt = run_iteration(st, wl, eng, e, 0, eng.max_seqs, budget, False, ORDER_FCFS, now)
            if dt == 0.0:
                raise RuntimeError("replica cannot schedule a request: it exceeds KV capacity")
            now += dt


def measure_capacity_rps(eng: Engine, wl: S.Workload, max_windows: int = 8) -> float:
    """Sustained completions per second of one replica on this workload."""
    W = min(int(wl.arrival_s.shape[0]), max_windows)
    N = int(wl.arrival_s.shape[1])
    sub = S.Workload(*(a[:W] for a in wl))
    st = S.allocate(W, 1, N, N, 1)
    _saturated_finish_times(st, sub, eng.__class__(**{**eng._asdict(), "cache_on": False}), VLLM_BUDGET)
    rates = []
    for e in range(W):
        done = np.sort(st.e2e[e])
        lo, hi = int(0.1 * N), int(0.9 * N) - 1
        rates.append((hi - lo) / (done[hi] - done[lo]))
    return float(np.median(rates))
