"""A replica's measured capacity: the request rate it sustains when never idle.

Load levels are fractions of this figure, so "load 1.1" means the same overload on any GPU,
model or trace. It is measured, not derived: a long stream of the workload's requests arrives
at once, so the replica always has requests waiting, and is served under vLLM's default
scheduling (admit all that fit, 8192-token budget). Capacity is the completion rate between
the 20th and 80th percentile completions: the steady state, without the ramp-up or the tail
where the batch drains.

The stream is the workload's first 2,048 requests (``max_requests``: ``CAPACITY_REQUESTS`` unless
a scenario sets it). A workload with fewer (a small user trace: 140 requests fit one batch of
vLLM's 1,024 sequences, and the 20th-80th percentile completions of that one batch gave 1,185
requests/s for a sustained 17.9) is repeated in order to fill it, as a load generator cycles a
short dataset, and the stream doubles (up to ``MAX_STREAM`` requests) until requests still wait
to start when the 80th percentile completion comes: the measured span is then all steady state.
A workload of 2,048 requests or more is measured on its first 2,048 as it always was (every
built-in trace: the committed results depend on their capacities).

2,048 requests reach steady state on every built-in family but one: burstgpt_like's Zipf lengths put
long requests among many short ones, and the short ones drain a stream of 2,048 before the long ones
fill the batch (201.7 requests/s on 2,048, 137.4 on 8,192, 119.1 / 119.6 / 119.5 on 32,768 / 65,536 /
131,072; the others move by at most 3% between 2,048 and 32,768: ``python
docs/scripts/capacity_stream_length.py TRACE``). A scenario measured on a longer stream says so
(KVAdmission-v0's ``capacity_requests``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core import state as S
from envs.core.engine import Engine
from envs.core.replica import (ORDER_FCFS, accepted_at_arrival, enqueue, reset_env_state, reset_replica,
                               run_iteration)
from envs.core.workload import TraceUnsuited

VLLM_BUDGET = 8192  # vLLM max_num_batched_tokens for online serving on >= 70 GiB GPUs
CAPACITY_REQUESTS = 2048  # requests in the capacity measurement's stream unless a scenario says otherwise


@nb.njit(cache=True, inline="always")
def count_unit(cap_rps, slo_ttft_s):
    """Requests one replica serves in one TTFT SLO: ``cap_rps`` (requests/s of one saturated
    replica, :func:`measure_capacity_rps`) x ``slo_ttft_s`` (s). The observations' unit of request
    counts (Routing-v0, KVAdmission-v0): counts relative to the engine's capacity and the SLO
    (issue 21), not to a constant."""
    return cap_rps * slo_ttft_s


@nb.njit(cache=True)
def _saturated_finish_times(st, wl, eng, budget):
    """Serve each env's window on replica 0, every request arriving at time 0 in index order.

    The requests join the queue as it needs them, not all at once: vLLM's FCFS admission scans the
    queue for its oldest request at every admission, so a queue of all M requests cost O(M) per
    iteration (a 10-request trace of 32k-token outputs, repeated to 2,048, took 54 s to measure).
    Before each iteration the queue holds at least one more request than the iteration can admit
    (each admitted request takes a batch slot, a budget token and a KV block), and those are the
    oldest not yet admitted: the schedule, and every finish time, is the one all at once gives."""
    E = st.window.shape[0]
    for e in range(E):
        reset_env_state(st, e, e, 0.0)
        reset_replica(st, eng, e, 0)
        N = wl.n_requests[e]
        st.next_arrival[e] = N
        nxt = 0
        now = 0.0
        while True:
            room = min(eng.max_seqs - st.n_running[e, 0], budget, st.free_blocks[e, 0]) + 1
            while nxt < N and st.n_queued[e, 0] < room:
                enqueue(st, wl, eng, e, 0, nxt)
                nxt += 1
            if st.n_running[e, 0] + st.n_queued[e, 0] == 0:
                break
            dt = run_iteration(st, wl, eng, e, 0, eng.max_seqs, budget, False, ORDER_FCFS, now)
            if dt == 0.0:
                raise RuntimeError("replica cannot schedule a queued request")
            now += dt


MAX_STREAM = 1 << 17  # most requests the stream of a cycled workload grows to (measure_capacity_rps)


def _none_served(wl: S.Workload, index: np.ndarray, source: str) -> None:
    """Raise ``TraceUnsuited``: none of the requests ``index`` (flat positions in ``wl``) is served."""
    distinct = np.unique(index)
    failed = int(wl.failed.reshape(-1)[distinct].sum())
    counts = (f"{len(distinct)} request(s): {failed} failed in the trace (e.g. output 0), "
              f"{len(distinct) - failed} rejected by the engine")
    raise TraceUnsuited(
        f"measure_capacity_rps: {source}: none served of its {counts}; no completion rate to measure",
        "requests the engine serves (not failed in the trace, within the model's context and KV pool)",
        f"has none in the part measured ({counts})")


class NoSteadyState(ValueError):
    """A workload whose 20th and 80th percentile completions coincide, or whose repeated requests
    never keep the replica busy through them: no completion rate to measure."""


def _serve_stream(eng: Engine, wl: S.Workload, index: np.ndarray, budget: int) -> S.ClusterState:
    """One replica's state after serving the requests ``index`` (flat positions in ``wl``'s [W, N]
    grid, in order, repeats allowed) all arriving at time 0."""
    W, N = wl.arrival_s.shape
    M = len(index)
    flat = lambda a: np.ascontiguousarray(a.reshape(W * N, *a.shape[2:])[index][None])  # noqa: E731
    stream = S.Workload(
        arrival_s=np.zeros((1, M)), prompt=flat(wl.prompt), output=flat(wl.output),
        pred_bucket=flat(wl.pred_bucket), n_requests=np.array([M], np.int32),
        chain_ids=flat(wl.chain_ids), chain_len=flat(wl.chain_len), failed=flat(wl.failed),
    )
    st = S.allocate(1, 1, M, M, 1)
    _saturated_finish_times(st, stream, eng._replace(cache_on=False), budget)
    return st


def _span(st: S.ClusterState) -> tuple[np.ndarray, int, int]:
    """Sorted completion times (s) of the served requests and the indices of the 20th and 80th
    percentile ones. Requests the trace marks failed or the engine rejects are never served: the
    capacity is that of the requests it serves."""
    done = np.sort(st.e2e[0][st.fate[0] == S.FINISHED])
    n = done.shape[0]
    return done, int(0.2 * n), min(int(0.8 * n), n - 1)


def measure_capacity_rps(eng: Engine, wl: S.Workload, max_requests: int = CAPACITY_REQUESTS,
                         budget: int = VLLM_BUDGET, source: str = "workload") -> float:
    """Sustained completions per second of one replica on this workload (prefill token budget
    ``budget`` per iteration, vLLM's by default): a finite, positive number of requests/s.

    The stream is the workload's first ``max_requests`` requests; a workload with fewer is
    repeated in order to fill it, and the stream doubles (at most ``MAX_STREAM``) until a request
    still waits for its first token when the 80th percentile completion comes (module docstring).

    The stream of a repeated workload holds only the requests it serves (one the trace marks failed
    or the engine rejects at arrival would shift the cycle), so that such a request leaves the
    capacity as if it were absent.

    Raises ``envs.core.workload.TraceUnsuited`` (a ``ValueError``) naming ``source`` (the trace or
    workload part measured) when no request is served (every one failed in the trace or rejected by
    the engine: a fault of the trace, not of the settings), and :class:`NoSteadyState` (a
    ``ValueError``) naming it and both percentiles when the 20th and 80th percentile completions
    coincide (every request finishing in one iteration), or
    when a repeated workload's stream of ``MAX_STREAM`` requests still drains before its 80th
    percentile completion: the rate would be inf (or NaN), and a count unit of inf
    (:func:`count_unit`) would zero every count feature."""
    W, N = wl.arrival_s.shape
    if W * N >= max_requests:  # as measured before repeats: the built-in traces' capacities, bit for bit
        index = np.arange(max_requests)
        st = _serve_stream(eng, wl, index, budget)
        done, lo, hi = _span(st)
        if done.shape[0] == 0:
            _none_served(wl, index, source)
    else:  # too few for the stream: repeat the ones it serves (failed or rejected ones would only shift the
        # cycle, padding left out) until the measured span is steady
        real = np.concatenate([w * N + np.arange(int(wl.n_requests[w])) for w in range(W)]).astype(np.int64)
        served = real[accepted_at_arrival(eng, wl.prompt.reshape(-1)[real], wl.output.reshape(-1)[real])
                      & ~wl.failed.reshape(-1)[real]]
        if served.size == 0:
            _none_served(wl, real, source)
        M = max_requests
        while True:
            index = np.resize(served, M)
            st = _serve_stream(eng, wl, index, budget)
            done, lo, hi = _span(st)
            last_start = float(np.max(st.ttft[0][st.fate[0] == S.FINISHED]))
            if last_start >= done[hi] and done[hi] > done[lo]:
                break
            if M >= MAX_STREAM:
                raise NoSteadyState(
                    f"measure_capacity_rps: {source}: its {len(served)} served request(s) repeated to {M} never keep "
                    f"the replica busy up to the 80th percentile completion (at {done[hi]:.6g} s; the last first "
                    f"token at {last_start:.6g} s): no steady state to measure (a trace of more, or longer, requests)")
            M *= 2
    n = done.shape[0]
    if not done[hi] > done[lo]:
        raise NoSteadyState(
            f"measure_capacity_rps: {source}: the 20th and 80th percentile completions coincide (completion "
            f"{lo} at {done[lo]:.6g} s, completion {hi} at {done[hi]:.6g} s, of {n} served): no completion rate "
            "to measure (requests of one length finish together: a trace of varied lengths, or more requests)")
    return float((hi - lo) / (done[hi] - done[lo]))
