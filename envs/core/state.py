"""Struct-of-arrays state of E independent simulated serving clusters.

Every array has leading dimension E (envs), then R (replicas), then S (request slots) or
C (prefix-cache entries). Capacities are fixed at allocation; ``status`` masks empty slots.
A NamedTuple of arrays is what numba kernels take cheaply (one argument, attribute access,
cacheable compiled code), so the whole batch travels through one kernel call.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

# Slot status.
FREE = 0
QUEUED = 1
RUNNING = 2

# Final fate of a request of the episode window (per-request result arrays).
PENDING = 0  # not arrived yet, or queued / running when the episode ended
FINISHED = 1
DROPPED = 2  # arrived while the replica's queue was full
FAILED = 3  # the trace marks it failed: it arrives but is not served (Trace.failed)
REJECTED = 4  # the engine refuses it at arrival: longer than the model's context or the KV pool

# Top gaps kept per request for its p99 time-between-tokens: exact for outputs of up to
# 100 * TOP_GAPS + 1 tokens (nearest-rank p99 is then among the TOP_GAPS largest gaps);
# beyond, the reported value is the TOP_GAPS-th largest gap, an upper bound. SLO checks do
# not depend on it: they count gaps over the TBT SLO exactly. A scenario whose outputs are
# shorter keeps fewer (``top_gaps_needed``; ``allocate(top_gaps=...)``) with the same results.
TOP_GAPS = 16

# Per-request SLO checks (``Engine.slo_metric``; names and sources in envs/slo.py).
SLO_TPOT = 0  # TTFT and mean time per output token (MLPerf Inference, DistServe)
SLO_P99_TBT = 1  # TTFT and the request's p99 gap between tokens

# Integer counters per env (``ClusterState.counters[e, k]``).
C_ARRIVED = 0
C_DROPPED = 1
C_FINISHED = 2
C_SLO_MET = 3
C_PREEMPTIONS = 4
C_RECOMPUTED_TOKENS = 5
C_PREFILL_TOKENS = 6
C_DECODE_TOKENS = 7
C_ITERATIONS = 8
C_CACHED_TOKENS = 9  # prompt tokens served from the prefix cache
C_PROMPT_TOKENS = 10  # prompt tokens of admitted requests (denominator of the token hit ratio)
C_CACHE_HIT_BLOCKS = 11
C_CACHE_LOOKUP_BLOCKS = 12
C_OUTPUT_TOKENS_MET = 13  # output tokens of requests that met the SLO
C_SLO_MISSED = 14  # requests known to miss the SLO (counted the moment it becomes certain)
C_FAILED = 15  # arrivals the trace marks failed (never served, never an SLO miss)
C_REJECTED = 16  # arrivals rejected by the engine (context length or KV pool), never an SLO miss
C_GAPS = 17  # gaps between tokens recorded in the episode (every request, finished or not)
N_COUNTERS = 18

# Float accumulators per env (``ClusterState.accum[e, k]``).
A_BUSY_S = 0  # replica-seconds spent in iterations
A_KV_BLOCK_S = 1  # integral of used KV blocks over time (for mean KV use)
A_TTFT_EMA = 2  # recent TTFT (exponential average over finished first tokens)
A_GAP_EMA = 3  # recent largest gap per iteration
A_LAST_ITER_S = 4
A_RECOMPUTE_EMA = 5
N_ACCUM = 6


class Workload(NamedTuple):
    """Episode windows, padded to N requests, one row per window. Read-only in kernels."""

    arrival_s: np.ndarray  # float64 [W, N], +inf past the window's end
    prompt: np.ndarray  # int32 [W, N]
    output: np.ndarray  # int32 [W, N], true output length (never observed)
    pred_bucket: np.ndarray  # int8 [W, N], noisy output-length bucket (observable)
    n_requests: np.ndarray  # int32 [W]
    chain_ids: np.ndarray  # int64 [W, N, B], prefix-block ids of the prompt, -1 padded
    chain_len: np.ndarray  # int16 [W, N]
    failed: np.ndarray  # bool [W, N], the trace marks the request failed (Trace.failed)


class ClusterState(NamedTuple):
    """Mutable simulation state for E envs x R replicas x S slots (x C cache entries)."""

    # --- per env
    window: np.ndarray  # int32 [E], row of Workload this env replays
    time_scale: np.ndarray  # float64 [E], arrival_s multiplier (load level)
    next_arrival: np.ndarray  # int32 [E], index of the next request to arrive
    clock: np.ndarray  # float64 [E], the env's simulated time
    counters: np.ndarray  # int64 [E, N_COUNTERS]
    accum: np.ndarray  # float64 [E, N_ACCUM]
    out_hist: np.ndarray  # float64 [E, N_HIST_BINS], finished output lengths (Past-Future)
    # --- per request of the window [E, N]
    fate: np.ndarray  # int8
    ttft: np.ndarray  # float64, NaN until the first token
    e2e: np.ndarray  # float64
    tbt_p99: np.ndarray  # float64, the request's nearest-rank p99 gap between tokens
    tpot: np.ndarray  # float64, (E2E - TTFT) / (output - 1); NaN for one output token
    slo_met: np.ndarray  # bool
    # The episode's largest gaps between tokens, G of them (``gap_heap_size``), as a min-heap of
    # (gap, count) entries (the layout above ``gap_heap_size``): sized by ``allocate(max_gaps=...)``
    # to hold the top 1% + 1 of every gap the episode can produce, so that the nearest-rank p99 over
    # all gaps (Sarathi-Serve's TBT) is exact. Read by ``kept_gaps``; ``replica._push_gaps`` writes it.
    gap_heap: np.ndarray  # float64 [E, G + 1, 2]
    # --- per replica [E, R]
    r_clock: np.ndarray  # float64, end of the replica's last iteration
    free_blocks: np.ndarray  # int32
    n_queued: np.ndarray  # int32
    n_running: np.ndarray  # int32
    next_seq: np.ndarray  # int64, FCFS order of arrivals at this replica
    # running list in admission order: run_list[e, r, :n_running] are slot ids
    run_list: np.ndarray  # int32 [E, R, S]
    sched: np.ndarray  # int32 [E, R, S], work of the current iteration: chunk tokens, or -1 = decode
    # --- per slot [E, R, S]
    status: np.ndarray  # int8
    req: np.ndarray  # int32, index into the window
    seq: np.ndarray  # int64, FCFS key (kept across preemption: preempted go first)
    target: np.ndarray  # int32, tokens to prefill (prompt, plus generated after preemption)
    kv_tokens: np.ndarray  # int32, tokens whose KV is stored
    generated: np.ndarray  # int32, output tokens produced
    blocks: np.ndarray  # int32, KV blocks held
    last_tok_t: np.ndarray  # float64
    gaps_over: np.ndarray  # int32, gaps longer than the TBT SLO
    missed: np.ndarray  # bool, the request can no longer meet its SLO
    top_gaps: np.ndarray  # float32 [E, R, S, T], descending; T <= TOP_GAPS (allocate)
    # --- prefix cache per replica [E, R, C] (C may be 1 when caching is off)
    pc_key: np.ndarray  # int64, block id, -1 = empty
    pc_last: np.ndarray  # float64, last access time
    pc_depth: np.ndarray  # int16, position of the block in its chain
    pc_count: np.ndarray  # int32 [E, R], entries in use
    pc_table: np.ndarray  # int32 [E, R, H], open-addressing index into pc_key, -1 = empty
    # --- scratch, not state (``SCRATCH_FIELDS``): contents are undefined between kernel calls
    pc_scratch: np.ndarray  # int32 [E, C], prefix.insert_chain's victim candidates (no allocation in kernels)
    gap_log: np.ndarray  # float32 [E, GAP_LOG + TOP_GAPS], replica.decode_run's gaps between tokens (one per
    # iteration), then the run's largest ones


# Fields that hold no simulation state, only working memory that kernels overwrite before reading
# (preallocated here so that kernels compiled without reference counting need not allocate):
# comparisons and digests of states leave them out.
SCRATCH_FIELDS = ("pc_scratch", "gap_log")

# Iterations one decode run (``replica.decode_run``) logs before it brings its requests' records up to date.
GAP_LOG = 64

# Output-length histogram for Past-Future: log2 bins of output tokens.
N_HIST_BINS = 16

# The int32 per-slot fields an engine iteration reads and writes for every running request;
# ``allocate(packed=True)`` stores them side by side (one [E, R, S, 7] array, each field a strided
# view of it), so that one request's fields share a cache line instead of lying in seven arrays.
PACKED_SLOT_FIELDS = ("req", "target", "kv_tokens", "generated", "blocks", "gaps_over", "sched")


def top_gaps_needed(max_output: int) -> int:
    """Largest gaps to keep per request so that every request of up to ``max_output`` output
    tokens gets its exact nearest-rank p99 gap: the p99 of n = output - 1 gaps is the
    (n - ceil(0.99 n) + 1)-th largest (n // 100 + 1), at most ``TOP_GAPS`` (1 for max_output <= 100).
    Keeping the top T of the top ``TOP_GAPS`` changes no result while T >= that rank."""
    n = max(int(max_output) - 1, 0)
    return min(TOP_GAPS, n - (99 * n + 99) // 100 + 1)


# The episode gap heap's layout (``ClusterState.gap_heap[e]``, float64 [G + 1, 2]): a count-compressed
# min-heap. Row 0 holds the number of entries K in [0, 0] (exact as a float64; meaningful only while the
# episode's ``C_GAPS`` counter is > 0: the heap is empty at 0, whatever its array holds, so a reset
# clears only the counter); rows 1..K are the entries (gap, count), a min-heap by gap, 1-indexed (the
# children of k are 2k and 2k + 1, side by side in one 32-byte pair). The counts add up to the kept
# gaps, min(C_GAPS, G): the G largest of every gap pushed, the same multiset as a plain heap of G gaps.
# Why counts: an iteration's gap is pushed once per lazy decoder (~100 at once in KVAdmission's steady
# state); entering the top, it took ~100 sift-downs of a plain heap, and here takes one entry, after
# removing the smallest entries (or part of one) it pushes out (issue 16's eleventh pass, docs/speed.md).


def gap_heap_size(max_gaps: int) -> int:
    """Gaps to keep (G) to hold the nearest-rank p99 of up to ``max_gaps`` gaps: it is the
    (n - ceil(0.99 n) + 1)-th largest of n gaps, at most n // 100 + 1."""
    return max(max_gaps, 0) // 100 + 1


def gap_heap_array(n_envs: int, max_gaps: int) -> np.ndarray:
    """Empty episode gap heaps for ``n_envs`` envs of up to ``max_gaps`` gaps each (exact p99 up to it):
    float64 [n_envs, G + 1, 2], G = ``gap_heap_size(max_gaps)`` (the layout above it)."""
    return np.zeros((n_envs, gap_heap_size(max_gaps) + 1, 2))


def kept_gaps(gap_heap: np.ndarray, n_gaps: int) -> np.ndarray:
    """The gaps one env's heap keeps, ascending: float64 [min(n_gaps, G)], the largest of the ``n_gaps``
    gaps pushed (``gap_heap``: one env's row, [G + 1, 2], the layout above ``gap_heap_size``; ``n_gaps``:
    its ``C_GAPS`` counter). Raises ``ValueError`` naming the entry count or the total of the counts where
    they are not what ``n_gaps`` gaps leave (a corrupt heap)."""
    G = gap_heap.shape[0] - 1
    if n_gaps <= 0:
        return np.zeros(0)
    k = int(gap_heap[0, 0])
    if not 1 <= k <= G:
        raise ValueError(f"kept_gaps: the heap holds {k} entries, expected 1..G={G} for n_gaps={n_gaps}")
    entries = gap_heap[1 : k + 1]
    counts = entries[:, 1].astype(np.int64)
    if counts.sum() != min(n_gaps, G) or (counts < 1).any():
        raise ValueError(f"kept_gaps: the heap's {k} entries count {counts.sum()} gaps, "
                         f"expected min(n_gaps={n_gaps}, G={G}) with every count >= 1")
    return np.sort(np.repeat(entries[:, 0], counts))


def episode_tbt_p99(gap_heap: np.ndarray, n_gaps: int) -> float:
    """Nearest-rank p99 over the ``n_gaps`` gaps of an episode from its top-gap heap (one env's row of
    ``ClusterState.gap_heap``, [G + 1, 2]), in seconds; NaN for none."""
    if n_gaps <= 0:
        return float("nan")
    rank = n_gaps - (99 * n_gaps + 99) // 100 + 1  # from the top
    kept = kept_gaps(gap_heap, n_gaps)
    return float(kept[kept.shape[0] - min(rank, kept.shape[0])])


@functools.cache
def _unit_bytes(top_gaps: int) -> tuple[int, int, int, int]:
    """Bytes :func:`allocate` takes per env, per replica, per request slot and per request (no prefix cache, no
    gaps), measured on states of one and two of each: its arrays are linear in each count."""
    def total(R: int, S: int, N: int) -> int:
        return sum(a.nbytes for a in allocate(1, R, S, N, top_gaps=top_gaps))
    one = total(1, 1, 1)
    slot = total(1, 2, 1) - one
    replica = total(2, 1, 1) - one - slot
    request = total(1, 1, 2) - one
    return one - replica - slot - request, replica, slot, request


def allocate_bytes(n_envs: int, n_replicas: int, n_slots: int, n_requests: int, top_gaps: int = 1) -> int:
    """A lower bound on the bytes ``allocate(n_envs, n_replicas, n_slots, n_requests, top_gaps=top_gaps)`` takes:
    its per-env, [E, R], [E, R, S] and [E, N] arrays (not the prefix cache's or the gap heap's, which only add).
    Environments check it against the machine's memory before allocating (``envs.config_check.check_sizes``)."""
    env, replica, slot, request = _unit_bytes(top_gaps)
    return n_envs * (env + n_replicas * (replica + n_slots * slot) + n_requests * request)


def allocate(
    n_envs: int,
    n_replicas: int,
    n_slots: int,
    n_requests: int,
    cache_entries: int = 0,
    max_gaps: int = 0,
    top_gaps: int = TOP_GAPS,
    packed: bool = False,
) -> ClusterState:
    """Zeroed state; ``reset_envs`` fills it for an episode.

    ``max_gaps``: the most gaps between tokens one episode can produce (the sum of output - 1 over
    a window's requests); the episode p99 TBT is exact up to it and an upper bound beyond.
    ``top_gaps``: largest gaps kept per request slot, 1 to ``TOP_GAPS`` (``top_gaps_needed`` of
    the scenario's longest output keeps every request's p99 exact). ``packed``: the hot per-slot
    fields (``PACKED_SLOT_FIELDS``) as strided views of one array, one request's side by side
    (kernels compile for these non-contiguous views; values are the same). Raises ``ValueError``
    naming the argument out of range.
    """
    if min(n_envs, n_replicas, n_slots, n_requests) < 1:
        raise ValueError(
            f"allocate: n_envs, n_replicas, n_slots, n_requests must be >= 1, got "
            f"{n_envs}, {n_replicas}, {n_slots}, {n_requests}"
        )
    if cache_entries < 0:
        raise ValueError(f"allocate: cache_entries must be >= 0, got {cache_entries}")
    if max_gaps < 0:
        raise ValueError(f"allocate: max_gaps must be >= 0, got {max_gaps}")
    if not 1 <= top_gaps <= TOP_GAPS:
        raise ValueError(f"allocate: top_gaps must be in 1..{TOP_GAPS}, got {top_gaps}")
    E, R, S, N = n_envs, n_replicas, n_slots, n_requests
    C = max(cache_entries, 1)
    H = 1
    while H < 2 * C:
        H *= 2
    st = ClusterState(
        window=np.zeros(E, np.int32),
        time_scale=np.ones(E, np.float64),
        next_arrival=np.zeros(E, np.int32),
        clock=np.zeros(E, np.float64),
        counters=np.zeros((E, N_COUNTERS), np.int64),
        accum=np.zeros((E, N_ACCUM), np.float64),
        out_hist=np.zeros((E, N_HIST_BINS), np.float64),
        fate=np.zeros((E, N), np.int8),
        ttft=np.full((E, N), np.nan),
        e2e=np.full((E, N), np.nan),
        tbt_p99=np.full((E, N), np.nan),
        tpot=np.full((E, N), np.nan),
        slo_met=np.zeros((E, N), np.bool_),
        gap_heap=gap_heap_array(E, max_gaps),
        r_clock=np.zeros((E, R), np.float64),
        free_blocks=np.zeros((E, R), np.int32),
        n_queued=np.zeros((E, R), np.int32),
        n_running=np.zeros((E, R), np.int32),
        next_seq=np.zeros((E, R), np.int64),
        run_list=np.zeros((E, R, S), np.int32),
        sched=np.zeros((E, R, S), np.int32),
        status=np.zeros((E, R, S), np.int8),
        req=np.zeros((E, R, S), np.int32),
        seq=np.zeros((E, R, S), np.int64),
        target=np.zeros((E, R, S), np.int32),
        kv_tokens=np.zeros((E, R, S), np.int32),
        generated=np.zeros((E, R, S), np.int32),
        blocks=np.zeros((E, R, S), np.int32),
        last_tok_t=np.zeros((E, R, S), np.float64),
        gaps_over=np.zeros((E, R, S), np.int32),
        missed=np.zeros((E, R, S), np.bool_),
        top_gaps=np.zeros((E, R, S, top_gaps), np.float32),
        pc_key=np.full((E, R, C), -1, np.int64),
        pc_last=np.zeros((E, R, C), np.float64),
        pc_depth=np.zeros((E, R, C), np.int16),
        pc_count=np.zeros((E, R), np.int32),
        pc_table=np.full((E, R, H), -1, np.int32),
        pc_scratch=np.zeros((E, C), np.int32),
        gap_log=np.zeros((E, GAP_LOG + TOP_GAPS), np.float32),
    )
    if not packed:
        return st
    hot = np.zeros((E, R, S, len(PACKED_SLOT_FIELDS)), np.int32)
    return st._replace(**{name: hot[..., k] for k, name in enumerate(PACKED_SLOT_FIELDS)})
