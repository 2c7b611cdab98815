"""TTFT of an episode's requests given the cached prefix each one got, through envs.core.

The eviction environment replays cache references only; to turn its hits into time to first
token, the episode's requests are replayed on one vLLM-like replica of the cluster model
(``envs.core.replica.run_iteration``: continuous batching, chunked prefill with vLLM's 8192-token
budget, FCFS, preemption by recompute) with each request's prefix cache hit fixed to what the
eviction policy gave it. The replica's own prefix cache is pre-filled with one synthetic chain of
``max_hit`` blocks and request i's chain is the first ``hit_i`` blocks of it, so the replica's
lookup returns exactly ``hit_i`` blocks (its LRU never evicts: those blocks are all the cache
holds). Arrivals keep the trace's shape, rescaled so that the offered load is ``load`` times the
replica's measured capacity without caching (``envs.core.capacity``): hits then show up as
lower TTFT.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import prefix
from envs.core import state as S
from envs.core.capacity import VLLM_BUDGET
from envs.core.engine import Engine
from envs.core.replica import (
    ORDER_FCFS,
    enqueue,
    reset_env_state,
    reset_replica,
    run_iteration,
)


@nb.njit(cache=True)
def _replay(st, wl, eng, scale, n_pre, budget):
    reset_env_state(st, 0, 0, scale)
    reset_replica(st, eng, 0, 0)
    for j in range(n_pre):
        prefix.insert(st, 0, 0, j, j, 0.0)
    N = wl.n_requests[0]
    now = 0.0
    while True:
        while st.next_arrival[0] < N and wl.arrival_s[0, st.next_arrival[0]] * scale <= now:
            enqueue(st, wl, eng, 0, 0, st.next_arrival[0])
            st.next_arrival[0] += 1
        if st.n_running[0, 0] + st.n_queued[0, 0] == 0:
            if st.next_arrival[0] >= N:
                return True
            now = wl.arrival_s[0, st.next_arrival[0]] * scale
            continue
        dt = run_iteration(st, wl, eng, 0, 0, eng.max_seqs, budget, False, ORDER_FCFS, now)
        if dt <= 0.0:
            return False
        now += dt


def replay_ttft(eng: Engine, arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                hit_tokens: np.ndarray, time_scale: float) -> np.ndarray:
    """TTFT (s) of each request when request i finds ``hit_tokens[i]`` prompt tokens cached
    (rounded down to whole chain blocks of ``eng.chain_block_tokens``)."""
    N = len(prompt)
    hits = (np.asarray(hit_tokens, np.int64) // eng.chain_block_tokens).astype(np.int16)
    B = max(int(hits.max()) if N else 0, 1)
    chain_ids = np.broadcast_to(np.arange(B, dtype=np.int64), (1, N, B)).copy()
    wl = S.Workload(
        arrival_s=np.ascontiguousarray((arrival_s - arrival_s[0])[None, :], np.float64),
        prompt=np.ascontiguousarray(prompt[None, :], np.int32),
        output=np.ascontiguousarray(np.maximum(output, 1)[None, :], np.int32),
        pred_bucket=np.zeros((1, N), np.int8),
        n_requests=np.array([N], np.int32),
        chain_ids=chain_ids,
        chain_len=hits[None, :].copy(),
        failed=np.zeros((1, N), np.bool_),
    )
    st = S.allocate(1, 1, N, N, B)
    if not _replay(st, wl, eng, float(time_scale), B, VLLM_BUDGET):
        raise RuntimeError("TTFT replay: a request cannot be scheduled (it exceeds the replica's KV)")
    return st.ttft[0].copy()
