"""The MoE expert-parallel cluster model shared by ExpertPlacement-v0 and its PettingZoo variant.

A batch of n independent episodes. Each has ``layers`` MoE layers of a catalogue model over an
expert-parallel group of ``gpus`` GPUs in nodes of ``gpus_per_node``; every GPU has
S = (experts + redundant_slots) / gpus expert slots. A placement ``place[n, layers, P]`` says which
logical expert each physical slot holds (slot p on GPU p // S). Load is tokens per expert per layer
per batch step: traces.ExpertLoadGenerator (or recorded counts, traces.load_expert_counts).

Per batch step and MoE layer (all costs from hwmodels):

* dispatch: a token routed to an expert with one replica goes there; tokens of replicated experts
  are water-filled onto the least-loaded of the GPUs holding a replica, experts in decreasing
  token count, which is where routing each token to the least-loaded replica ends up
  (``dispatch="least_loaded"``, the issue's rule). ``dispatch="even"`` splits them evenly over the
  replicas instead, as vLLM's EPLB does (replica chosen by token position modulo replica count).
* expert FFN: hwmodels.expert_group_time of each GPU's slots; the layer waits for the slowest GPU.
* dispatch + combine all-to-all: each GPU holds tokens_per_gpu tokens (attention data parallel)
  and sends top_k copies; the busiest GPU moves max(sent, received) token rows of hidden *
  dtype_bytes each way: 2 * hwmodels.alltoall_time of those bytes (NVLink inside a node, the NIC
  share across nodes).
* migration: at a rebalance every GPU receives the experts it gains (from a GPU of its own node
  over NVLink when one holds the expert, else over its NIC: hwmodels.weight_transfer_time); the
  engine blocks until the slowest GPU is done (SGLang's EPLB update is a blocking step), so that
  time is added once per rebalance.

The perfect-balance bound spreads every expert's tokens evenly over the GPUs with each expert's
weights read once (so sum of per-expert FFN times / gpus + the grouped-GEMM latency) and
all-to-all traffic equal to what each GPU sends: no placement can do better (tests check it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

import hwmodels
import traces
from traces.numeric import pairwise_sum
from envs import config_check
from envs.core.engine import SLO_MIN_S
from envs.core.workload import CLOCK_LIMIT_S
from envs.expert_placement import algos as A
from traces.checks import is_integer, is_real, positive_real

TRAIN_DRIFTS = (0.005, 0.02, 0.08)
TEST_DRIFTS = (0.01, 0.04, 0.15)  # never seen in training: the held-out drift settings
SPLITS = {"train": 0, "test": 1, "all": 0}


@dataclass(frozen=True)
class ExpertPlacementConfig:
    """Everything that defines a scenario; ``--env-kwargs`` set these fields."""

    trace: str = "default"  # "default" = the generator; or a path to recorded counts (.npz 'counts')
    split: str = "train"  # "train" | "test" (held-out generator seeds and drifts, or last part of counts) | "all"
    window_order: str = "random"  # "random" | "sequential"
    held_out_frac: float = 0.3  # recorded counts: share of steps (the last ones) held out
    model: str = "DeepSeek-V3"
    gpu: str = "H200"
    gpus: int = 32
    gpus_per_node: int = 8
    redundant_slots: int | None = None  # None: the fewest >= gpus that fill every GPU equally
    layers: int = 4  # MoE layers simulated (placement is per layer)
    tokens_per_gpu: int = 256  # tokens per GPU per batch step (EP decode batch)
    drift: float | tuple[float, ...] | None = None  # generator drift per step; None: by split
    zipf_s: float = 0.6  # popularity skew: expert ranked r weighs r^-zipf_s; 0 = uniform popularity; >= 0
    layer_corr: float = 0.5
    phase_shift_every: int | None = None
    interval_steps: int = 32  # batch steps between rebalances
    intervals: int = 16  # rebalances per episode (after one warm-up interval on the initial placement)
    candidates: int = 8  # K: hottest experts offered per decision
    replica_substeps: bool = False  # custom mode: one sub-step per redundant replica (else all at once)
    dispatch: str = "least_loaded"  # "least_loaded" | "even"
    inter_node_bw: float | None = None  # bytes/s per GPU NIC; None: hwmodels' data/infra.toml
    reward_scale_s: float = 1e-3  # reward unit: -(seconds per MoE layer-step) / this
    # Privileged teacher only (imitation labels, envs/expert_placement/teacher.py): intervals after the
    # next one that its cost plays sticky_eplb from the placement a mode leaves (0: the next interval only;
    # a larger value than the intervals left in the episode plays to its end: teacher.interval_table).
    teacher_rollout: int = 0

    def drifts(self) -> tuple[float, ...]:
        if self.drift is None:
            return TEST_DRIFTS if self.split == "test" else TRAIN_DRIFTS
        d = (self.drift,) if isinstance(self.drift, (int, float)) else tuple(self.drift)
        if not d or any(not (isinstance(x, (int, float)) and 0 <= x <= 1) for x in d):
            raise ValueError(f"ExpertPlacement: drift must be a number or numbers in [0, 1], got {self.drift!r}")
        return tuple(float(x) for x in d)


def _int(name: str, v: Any, lo: int) -> int:
    if not is_integer(v) or v < lo:
        raise ValueError(f"ExpertPlacement: {name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def make_config(config: ExpertPlacementConfig | None = None, **kwargs: Any) -> ExpertPlacementConfig:
    """Validated config; an unknown field or a bad value raises an error naming it."""
    cfg = config_check.make_config(ExpertPlacementConfig, config, kwargs, "ExpertPlacement")
    m = hwmodels.get_model(cfg.model)
    if not m.is_moe:
        raise ValueError(f"ExpertPlacement: model {cfg.model!r} is dense; choose an MoE model")
    hwmodels.get_gpu(cfg.gpu)
    G = _int("gpus", cfg.gpus, 1)
    gpn = _int("gpus_per_node", cfg.gpus_per_node, 1)
    if G > gpn and G % gpn:
        raise ValueError(f"ExpertPlacement: gpus ({G}) must be a multiple of gpus_per_node ({gpn})")
    R = cfg.redundant_slots
    if R is None:
        R = G + (-(m.experts + G)) % G
    R = _int("redundant_slots", R, 0)
    if (m.experts + R) % G:
        raise ValueError(f"ExpertPlacement: experts + redundant_slots ({m.experts} + {R}) must be a multiple of "
                         f"gpus ({G}) so that every GPU has the same number of slots")
    if m.experts + R < G:
        raise ValueError(f"ExpertPlacement: {m.experts} experts + {R} redundant slots leave GPUs without a slot")
    for name, lo in (("layers", 1), ("tokens_per_gpu", 1), ("interval_steps", 1), ("intervals", 1),
                     ("candidates", 1), ("teacher_rollout", 0)):
        _int(name, getattr(cfg, name), lo)
    if not isinstance(cfg.replica_substeps, bool):
        raise TypeError(f"ExpertPlacement: replica_substeps must be true or false, got {cfg.replica_substeps!r}")
    if cfg.phase_shift_every is not None:
        _int("phase_shift_every", cfg.phase_shift_every, 1)
    if cfg.dispatch not in ("least_loaded", "even"):
        raise ValueError(f"ExpertPlacement: dispatch must be 'least_loaded' or 'even', got {cfg.dispatch!r}")
    # zipf_s = 0 is uniform popularity (traces.moe.ExpertLoadGenerator's range, r^-0 = 1 for every rank); the
    # check said "> 0" while it took 0
    if not is_real(cfg.zipf_s, finite=True) or not cfg.zipf_s >= 0:
        raise ValueError(f"ExpertPlacement: zipf_s must be a finite number >= 0 (0: uniform popularity), "
                         f"got {cfg.zipf_s!r}")
    positive_real(cfg.reward_scale_s, "ExpertPlacement: reward_scale_s")
    # The reward's time unit lies in an SLO's range, a microsecond to 2^32 s (envs.core.engine.SLO_MIN_S): 1e-308
    # made rewards inf, 1e308 made every reward 0.0 in float32
    if not SLO_MIN_S <= cfg.reward_scale_s <= CLOCK_LIMIT_S:
        raise ValueError(f"ExpertPlacement: reward_scale_s must lie in [{SLO_MIN_S:g}, {CLOCK_LIMIT_S:.10g}] seconds, "
                         f"got {cfg.reward_scale_s!r}")
    if cfg.inter_node_bw is not None:  # one expert's move within the clock's span: 1e-308 B/s made costs inf, scores nan
        bw = positive_real(cfg.inter_node_bw, "ExpertPlacement: inter_node_bw (bytes/s)")
        least = m.expert_params * m.linear_dtype_bytes / CLOCK_LIMIT_S
        if not bw >= least:
            raise ValueError(f"ExpertPlacement: inter_node_bw {bw:g} bytes/s moves one expert of {m.name} "
                             f"({m.expert_params * m.linear_dtype_bytes:.3g} bytes) in more than 2^32 s; at least "
                             f"{least:.3g} bytes/s")
    if not (isinstance(cfg.layer_corr, (int, float)) and 0 <= cfg.layer_corr <= 1):
        raise ValueError(f"ExpertPlacement: layer_corr must lie in [0, 1], got {cfg.layer_corr!r}")
    if not (isinstance(cfg.held_out_frac, (int, float)) and 0 < cfg.held_out_frac < 1):
        raise ValueError(f"ExpertPlacement: held_out_frac must lie in (0, 1), got {cfg.held_out_frac!r}")
    cfg.drifts()
    return replace(cfg, redundant_slots=R, drift=cfg.drifts() if cfg.drift is not None else None)


@dataclass(frozen=True)
class Shape:
    """Derived sizes and hwmodels constants of a config."""

    E: int  # logical experts
    G: int  # GPUs
    S: int  # slots per GPU
    P: int  # physical slots
    R: int  # redundant slots
    L: int  # simulated MoE layers
    k: int  # experts per token
    groups: int
    nodes: int
    gpn: int
    tokens_per_step: int
    row_bytes: float  # one token row in the all-to-all
    expert_bytes: float
    moe_layers: int  # the model's MoE layers (throughput is per whole model)
    extra: dict = field(default_factory=dict, compare=False)


def shape_of(cfg: ExpertPlacementConfig) -> Shape:
    m = hwmodels.get_model(cfg.model)
    G, R = cfg.gpus, int(cfg.redundant_slots)
    P = m.experts + R
    nodes = max(1, G // cfg.gpus_per_node)
    return Shape(E=m.experts, G=G, S=P // G, P=P, R=R, L=cfg.layers, k=m.top_k, groups=m.expert_groups,
                 nodes=nodes, gpn=min(cfg.gpus_per_node, G), tokens_per_step=cfg.tokens_per_gpu * G,
                 row_bytes=float(m.hidden * m.dtype_bytes), expert_bytes=float(m.expert_params * m.linear_dtype_bytes),
                 moe_layers=m.n_moe_layers)


def initial_placement(sh: Shape) -> np.ndarray:
    """Plain EP, as vLLM initialises EPLB: physical slot p holds logical expert p mod experts."""
    return np.broadcast_to(np.arange(sh.P) % sh.E, (sh.L, sh.P)).astype(np.int64)


# ---------------------------------------------------------------- dispatch (numba)
@nb.njit(cache=True, _nrt=False)
def _stable_order(key: np.ndarray, m: int, order: np.ndarray) -> None:
    """``order[:m]`` = indices of ``key[:m]`` in ascending key, lowest index first on ties: what
    ``np.argsort(key[:m], kind="mergesort")`` returns, by insertion sort into a caller's buffer
    (m is a handful of GPUs or the replicated experts, and no array is allocated per call)."""
    for i in range(m):
        v = key[i]
        j = i
        while j > 0 and key[order[j - 1]] > v:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@nb.njit(cache=True, _nrt=False)
def _waterfill(n: int, loads: np.ndarray, m: int, out: np.ndarray, order: np.ndarray) -> None:
    """Split n tokens over m GPUs with ``loads`` so the lowest fill up first (integers; the
    remainder goes to the lowest-loaded GPUs, lowest index first on ties). ``order``: int64
    buffer of at least m entries."""
    if m == 2:  # an expert on two GPUs, the common case, written out (the same integers)
        o0, o1 = (1, 0) if loads[0] > loads[1] else (0, 1)
        d = loads[o1] - loads[o0]
        if d > n:
            out[o0] = n
            out[o1] = 0
        else:
            add = (n - d) // 2
            out[o0] = d + add + (n - d - 2 * add)
            out[o1] = add
        return
    _stable_order(loads, m, order)
    # find the level: raise the j lowest to their next load while tokens last
    j = 1
    used = 0
    while j < m and used + j * (loads[order[j]] - loads[order[j - 1]]) <= n:
        used += j * (loads[order[j]] - loads[order[j - 1]])
        j += 1
    level = loads[order[j - 1]]
    rest = n - used
    # rest // j without a 64-bit integer division: rest >= 0 and j <= m, so a double's quotient
    # truncates to the same integer while rest < 2**40 (its rounding error stays below 1 / j)
    add = rest if j == 1 else (int(rest / j) if rest < 1099511627776 else rest // j)
    rem = rest - add * j
    for i in range(m):
        out[i] = 0
    for i in range(j):
        out[order[i]] = level - loads[order[i]] + add + (1 if i < rem else 0)


@nb.njit(cache=True)
def _buffers(E: int, P: int, G: int) -> np.ndarray:
    """The int64 scratch rows ``_dispatch``, ``_dispatch_costs`` and ``moe_s_sum`` take
    ([_NBUF, max(E, P, G) + 1]; uninitialised: each row is written before it is read)."""
    return np.empty((_NBUF, max(E, P, G) + 1), np.int64)


_NBUF = 22


@nb.njit(cache=True)
def dispatch_batch(counts: np.ndarray, place: np.ndarray, S: int, G: int, even: bool, out: np.ndarray) -> None:
    """Tokens per physical slot ``out[n, T, L, P]`` for counts ``[n, T, L, E]`` and placements ``[n, L, P]``."""
    _dispatch(counts, place, S, G, even, out, _buffers(counts.shape[3], place.shape[2], G))


@nb.njit(cache=True)
def dispatch_costs(counts: np.ndarray, place: np.ndarray, S: int, G: int, even: bool, table: np.ndarray,
                   latency: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dispatch_batch`` and ``_gpu_costs`` in one pass, without the tokens-per-slot array: for
    counts ``[n, T, L, E]`` and placements ``[n, L, P]``, the slowest GPU's FFN time (float64), the
    peak GPU load and the total load (int64), each ``[n, T, L]``; bit for bit what
    ``_gpu_costs`` returns on ``dispatch_batch``'s output (tests check it). ``table`` must cover
    every count (``CostModel.ffn_table``)."""
    n, T, L, E = counts.shape
    ffn = np.empty((n, T, L))
    peak = np.empty((n, T, L), np.int64)
    total = np.empty((n, T, L), np.int64)
    _dispatch_costs(counts, place, S, G, even, table, latency, ffn, peak, total, np.empty(S),
                    _buffers(E, place.shape[2], G))
    return ffn, peak, total


@nb.njit(cache=True, _nrt=False)
def _layer_lists(pl, gpu_of, cnt, first, nxt, singles, sslot, sgpu, order, srt, hstart, hcnt, host_g, host_ns, slot_h,
                 onhost):
    """What dispatch needs of one layer's placement ``pl[P]``, once per placement (every step
    reuses it): each expert's replica count and the linked list of its slots, in slot order; the
    experts with one replica (``singles[:ns]``, by index) with their slot and GPU (``sslot``,
    ``sgpu``); the experts with several (``order[:nr]``, by index) with ``srt[:nr]`` reset to the
    identity and their distinct GPUs in order of first appearance along the slot list
    (``host_g[hstart[i]:][:hcnt[i]]``, each with its number of the expert's slots ``host_ns``),
    and for each of their slots the index of its GPU in that list (``slot_h[p]``). ``onhost[G]``
    must be -1 and is left so. Returns (ns, nr)."""
    cnt[:] = 0
    first[:] = -1
    for p in range(pl.shape[0] - 1, -1, -1):
        x = pl[p]
        cnt[x] += 1
        nxt[p] = first[x]
        first[x] = p
    ns = 0
    nr = 0
    pos = 0
    for x in range(cnt.shape[0]):
        if cnt[x] == 1:
            singles[ns] = x
            sslot[ns] = first[x]
            sgpu[ns] = gpu_of[first[x]]
            ns += 1
        elif cnt[x] > 1:
            order[nr] = x
            srt[nr] = nr
            m = 0
            p = first[x]
            while p >= 0:
                g = gpu_of[p]
                if onhost[g] < 0:
                    onhost[g] = m
                    host_g[pos + m] = g
                    host_ns[pos + m] = 0
                    m += 1
                h = onhost[g]
                host_ns[pos + h] += 1
                slot_h[p] = h
                p = nxt[p]
            for h in range(m):
                onhost[host_g[pos + h]] = -1
            hstart[nr] = pos
            hcnt[nr] = m
            pos += m
            nr += 1
    return ns, nr


# Compiled without numba's reference counting (its per-view incref/decref pairs were a large part of
# the time): they allocate nothing; dispatch_batch and dispatch_costs hand them every buffer.
@nb.njit(cache=True, _nrt=False)
def _dispatch(counts, place, S, G, even, out, b) -> None:
    n, T, L, E = counts.shape
    gpu_of, onhost = b[16], b[6]
    for p in range(place.shape[2]):
        gpu_of[p] = p // S
    onhost[:] = -1
    for e_ in range(n):
        for l in range(L):
            ns, nr = _layer_lists(place[e_, l], gpu_of, b[0], b[1], b[2], b[3], b[4], b[5], b[7], b[8], b[9], b[10],
                                  b[11], b[12], b[13], onhost)
            for t in range(T):
                _dispatch_step(counts[e_, t, l], out[e_, t, l], even, b[17], b[0], b[1], b[2], b[3], b[4], b[5], ns,
                               b[7], b[8], b[15], nr, b[9], b[10], b[11], b[12], b[13], b[18], b[19], b[20], b[21])


@nb.njit(cache=True, _nrt=False)
def _dispatch_costs(counts, place, S, G, even, table, latency, ffn, peak, total, buf, b) -> None:
    n, T, L, E = counts.shape
    gpu_of, onhost, o = b[16], b[6], b[14]
    for p in range(place.shape[2]):
        gpu_of[p] = p // S
    onhost[:] = -1
    for e_ in range(n):
        for l in range(L):
            ns, nr = _layer_lists(place[e_, l], gpu_of, b[0], b[1], b[2], b[3], b[4], b[5], b[7], b[8], b[9], b[10],
                                  b[11], b[12], b[13], onhost)
            gpu_load = b[17]
            for t in range(T):
                _dispatch_step(counts[e_, t, l], o, even, gpu_load, b[0], b[1], b[2], b[3], b[4], b[5], ns, b[7], b[8],
                               b[15], nr, b[9], b[10], b[11], b[12], b[13], b[18], b[19], b[20], b[21])
                best, pk, tot = _step_costs(table, o, gpu_load, G, S, latency, buf)
                ffn[e_, t, l] = best
                peak[e_, t, l] = pk
                total[e_, t, l] = tot


@nb.njit(cache=True, _nrt=False)
def moe_s_sum(counts, e, k0, T, l, pl, S, G, even, table, latency, a2a2, sent_rows, buf, b, ffn, peak) -> float:
    """MoE seconds of layer ``l`` on placement ``pl[P]`` summed over env e's steps ``k0 .. k0 + T - 1``
    of ``counts[n, steps, L, E]``: ``dispatch_costs``' slowest-GPU FFN time of each step plus
    ``a2a2[max(peak GPU load, sent_rows)]`` (both all-to-alls' seconds by token rows:
    ``CostModel.time_tables``), added in step order; the same floats as summing ``dispatch_costs``
    on those rows in a loop, without copying the rows or allocating. Each step's FFN time and peak
    GPU load (``dispatch_costs``' ffn and peak) are written to ``ffn[T]`` and ``peak[T]``.
    ``buf``: float64 [S]; ``b``: ``_buffers(E, P, G)``."""
    gpu_of, onhost, o, gpu_load = b[16], b[6], b[14], b[17]
    for p in range(pl.shape[0]):
        gpu_of[p] = p // S
    onhost[:] = -1
    ns, nr = _layer_lists(pl, gpu_of, b[0], b[1], b[2], b[3], b[4], b[5], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                          onhost)
    t = 0.0
    for s in range(T):
        _dispatch_step(counts[e, k0 + s, l], o, even, gpu_load, b[0], b[1], b[2], b[3], b[4], b[5], ns, b[7], b[8],
                       b[15], nr, b[9], b[10], b[11], b[12], b[13], b[18], b[19], b[20], b[21])
        best, pk, _ = _step_costs(table, o, gpu_load, G, S, latency, buf)
        ffn[s] = best
        peak[s] = pk
        t += best + a2a2[max(pk, sent_rows)]
    return t


@nb.njit(cache=True, _nrt=False, inline="always")
def _step_costs(table, o, gpu_load, G, S, latency, buf):
    """``_gpu_costs`` of one step's tokens per slot ``o[G * S]`` with the GPUs' loads ``gpu_load[G]``
    (their slots' integer sums): (slowest GPU's FFN seconds, peak load, total load)."""
    best = 0.0
    pk = 0
    tot = 0
    for g in range(G):
        load = gpu_load[g]
        v = _slot_time_sum(table, o, g * S, S, buf) + (latency if load > 0 else 0.0)
        if v > best or g == 0:
            best = v
        if load > pk or g == 0:
            pk = load
        tot += load
    return best, pk, tot
@nb.njit(cache=True, _nrt=False, inline="always")
def _slot_time_sum(table, o, lo, S, buf) -> float:
    """``pairwise_sum`` of ``table[o[lo:lo + S]]`` (one GPU's FFN times), reading the table
    directly for S <= 128 (numpy's sequential sum below 8 values, 8 accumulators up to 128)."""
    if S < 8:
        res = 0.0
        for j in range(S):
            res += table[o[lo + j]]
        return res
    if S > 128:
        for j in range(S):
            buf[j] = table[o[lo + j]]
        return pairwise_sum(buf, 0, S)
    r0, r1, r2, r3 = table[o[lo]], table[o[lo + 1]], table[o[lo + 2]], table[o[lo + 3]]
    r4, r5, r6, r7 = table[o[lo + 4]], table[o[lo + 5]], table[o[lo + 6]], table[o[lo + 7]]
    i = 8
    while i < S - S % 8:
        r0 += table[o[lo + i]]
        r1 += table[o[lo + i + 1]]
        r2 += table[o[lo + i + 2]]
        r3 += table[o[lo + i + 3]]
        r4 += table[o[lo + i + 4]]
        r5 += table[o[lo + i + 5]]
        r6 += table[o[lo + i + 6]]
        r7 += table[o[lo + i + 7]]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < S:
        res += table[o[lo + i]]
        i += 1
    return res


@nb.njit(cache=True, _nrt=False)
def _dispatch_step(row, o, even, gpu_load, cnt, first, nxt, singles, sslot, sgpu, ns, order, srt, key, nr, hstart, hcnt,
                   host_g, host_ns, slot_h, hload, hsl, share, gorder) -> None:
    """Tokens per slot ``o[P]`` of one step and layer (counts ``row[E]``) and each GPU's load
    ``gpu_load[G]``, for the lists of ``_layer_lists`` (every slot is written: it holds a single
    expert or one replica of a replicated one)."""
    gpu_load[:] = 0
    for i in range(ns):
        v = row[singles[i]]
        o[sslot[i]] = v
        gpu_load[sgpu[i]] += v
    # replicated experts, most tokens first (ties: lower index): insertion-sorted from the previous
    # step's order of this layer (loads drift slowly); a total order, so the stable argsort's result
    for i in range(nr):
        key[i] = -row[order[i]]
    for i in range(1, nr):
        v = srt[i]
        kv = key[v]
        j = i
        while j > 0:
            u = srt[j - 1]
            ku = key[u]
            if ku > kv or (ku == kv and u > v):
                srt[j] = u
                j -= 1
            else:
                break
        srt[j] = v
    for i in range(nr):
        ix = srt[i]
        x = order[ix]
        tok = row[x]
        h0 = hstart[ix]
        if even:
            c = cnt[x]
            base = tok // c
            rem = tok - base * c
            p = first[x]
            r = 0
            while p >= 0:
                v = base + (1 if r < rem else 0)
                o[p] = v
                gpu_load[host_g[h0 + slot_h[p]]] += v
                r += 1
                p = nxt[p]
            continue
        # the distinct GPUs holding x (in order of first appearance along its slots) share its
        # tokens, the least loaded filled first
        m = hcnt[ix]
        for h in range(m):
            hload[h] = gpu_load[host_g[h0 + h]]
            hsl[h] = host_ns[h0 + h]
        _waterfill(tok, hload, m, share, gorder)
        for h in range(m):
            gpu_load[host_g[h0 + h]] += share[h]
        # split each GPU's share evenly over its slots of x
        p = first[x]
        while p >= 0:
            h = slot_h[p]
            if hsl[h] == 1:  # (no integer division: the common case)
                q, r = share[h], 0
            else:
                q = share[h] // hsl[h]
                r = share[h] - q * hsl[h]
            o[p] = q + r  # the first slot on that GPU takes the remainder
            share[h] -= q + r
            hsl[h] -= 1
            p = nxt[p]


@nb.njit(cache=True)
def migration_counts(old: np.ndarray, new: np.ndarray, G: int, gpn: int, E: int, out: np.ndarray) -> None:
    """``out[n, G, 2]`` experts each GPU receives (own node, other node) summed over layers."""
    out[:] = 0
    for e in range(old.shape[0]):
        for l in range(old.shape[1]):
            A.moved_experts(old[e, l], new[e, l], G, gpn, E, out[e])


@nb.njit(cache=True)
def _gpu_costs(slots: np.ndarray, table: np.ndarray, latency: float, G: int, S: int):
    """For tokens per slot ``slots[N, G * S]``: the slowest GPU's FFN time (``table`` of each slot's
    tokens summed over the GPU's S slots, + ``latency`` if it has tokens), the peak GPU load and the
    total load, each [N]."""
    N = slots.shape[0]
    ffn = np.empty(N)
    peak = np.empty(N, np.int64)
    total = np.empty(N, np.int64)
    buf = np.empty(S)
    for i in range(N):
        row = slots[i]
        best = -np.inf
        pk = 0
        tot = 0
        for g in range(G):
            load = 0
            for j in range(S):
                t = row[g * S + j]
                load += t
                buf[j] = table[t]
            v = pairwise_sum(buf, 0, S) + (latency if load > 0 else 0.0)
            if v > best or g == 0:
                best = v
            if load > pk or g == 0:
                pk = load
            tot += load
        ffn[i] = best
        peak[i] = pk
        total[i] = tot
    return ffn, peak, total


# ---------------------------------------------------------------- costs (hwmodels, numpy)
class CostModel:
    """hwmodels costs of one config; every method is vectorized over leading axes."""

    def __init__(self, cfg: ExpertPlacementConfig, sh: Shape):
        self.cfg, self.sh = cfg, sh
        self.model = hwmodels.get_model(cfg.model)
        self.gpu = hwmodels.get_gpu(cfg.gpu)
        self.cal = hwmodels.default_calibration()
        self.latency = self.cal.moe_latency_s  # expert_group_time's per-call term
        self.sent_rows = float(cfg.tokens_per_gpu * sh.k)
        # hwmodels.expert_ffn_time for every possible token count of one slot (a lookup is 5x
        # faster than re-evaluating the roofline per slot; tests check parity with expert_group_time)
        self.ffn_table = hwmodels.expert_ffn_time(self.model, self.gpu, np.arange(sh.tokens_per_step + 1), self.cal)

    def group_time(self, per_gpu: np.ndarray) -> np.ndarray:
        """hwmodels.expert_group_time of tokens per slot ``[..., S]`` (summed over the last axis)."""
        self._fit_table(per_gpu)
        return self.ffn_table[per_gpu].sum(-1) + np.where(per_gpu.sum(-1) > 0, self.latency, 0.0)

    def _fit_table(self, tokens: np.ndarray) -> None:
        top = int(tokens.max()) if tokens.size else 0
        if top >= self.ffn_table.shape[0]:  # recorded counts may exceed tokens_per_gpu * gpus
            self.ffn_table = hwmodels.expert_ffn_time(self.model, self.gpu, np.arange(top + 1), self.cal)

    def a2a(self, rows: np.ndarray) -> np.ndarray:
        """One all-to-all in which the busiest GPU moves ``rows`` token rows."""
        sh = self.sh
        if sh.nodes > 1:
            return hwmodels.alltoall_time(rows * sh.row_bytes, self.gpu, sh.G, intra_node=False, nodes=sh.nodes,
                                          inter_node_bw=self.cfg.inter_node_bw, calibration=self.cal)
        return hwmodels.alltoall_time(rows * sh.row_bytes, self.gpu, sh.G, calibration=self.cal)

    def layer_costs(self, slot_tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Per-step, per-layer costs for tokens per slot ``[..., P]`` (int): dict of float64
        ``[...]`` arrays ``moe_s``, ``ffn_s``, ``a2a_s`` (seconds), ``imbalance`` (max/mean GPU
        load), ``a2a_bytes``. The FFN time of each GPU (the table's per-slot times summed in
        numpy's pairwise order, plus the per-call latency where the GPU has tokens), its slowest
        GPU and the peak and total GPU loads come from one numba pass (``_gpu_costs``); equal, bit
        for bit, to the numpy expressions it replaced (tests keep them as the reference)."""
        sh = self.sh
        self._fit_table(slot_tokens)
        lead = slot_tokens.shape[:-1]
        flat = np.ascontiguousarray(slot_tokens).reshape(-1, sh.P)
        ffn, peak_i, total = (a.reshape(lead) for a in _gpu_costs(flat, self.ffn_table, self.latency, sh.G, sh.S))
        return self._costs(ffn, peak_i, total)

    def dispatch_costs(self, counts: np.ndarray, place: np.ndarray) -> dict[str, np.ndarray]:
        """``layer_costs`` of ``dispatch_batch(counts [n, T, L, E], place [n, L, P])``, bit for bit,
        in one numba pass without the tokens-per-slot array (``dispatch_costs``): dict of float64
        ``[n, T, L]`` arrays as ``layer_costs``."""
        self._fit_table(counts)  # a slot's tokens never exceed its expert's count
        ffn, peak_i, total = dispatch_costs(counts, place, self.sh.S, self.sh.G, self.cfg.dispatch == "even",
                                            self.ffn_table, self.latency)
        return self._costs(ffn, peak_i, total)

    def _costs(self, ffn: np.ndarray, peak_i: np.ndarray, total: np.ndarray) -> dict[str, np.ndarray]:
        sh = self.sh
        peak = peak_i.astype(np.float64)
        rows = np.maximum(peak, self.sent_rows)
        a2a = self.a2a(rows)
        return {"moe_s": ffn + 2.0 * a2a, "ffn_s": ffn, "a2a_s": 2.0 * a2a,
                "imbalance": peak / np.maximum(total / sh.G, 1e-12), "a2a_bytes": 2.0 * rows * sh.row_bytes}

    def moe_s(self, ffn: np.ndarray, peak_i: np.ndarray) -> np.ndarray:
        """``_costs``' moe_s alone (the same expressions): the slowest GPU's FFN seconds ``ffn`` plus both
        all-to-alls of the busiest GPU's token rows (its peak load ``peak_i``, at least ``sent_rows``)."""
        return ffn + 2.0 * self.a2a(np.maximum(peak_i.astype(np.float64), self.sent_rows))

    def bound_costs(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Perfect balance for counts ``[..., E]``: a lower bound on every placement's layer time."""
        sh = self.sh
        self._fit_table(counts)
        ffn = self.ffn_table[counts].sum(-1) / sh.G
        ffn = ffn + np.where(counts.sum(-1) > 0, self.latency, 0.0)
        rows = np.full(counts.shape[:-1], self.sent_rows)
        a2a = self.a2a(rows)
        return {"moe_s": ffn + 2.0 * a2a, "ffn_s": ffn, "a2a_s": 2.0 * a2a, "imbalance": np.ones_like(ffn),
                "a2a_bytes": 2.0 * rows * sh.row_bytes}

    def time_tables(self, max_rows: int, max_moved: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-count tables for the numba kernels (``envs.expert_placement.kernels``), elementwise the
        same hwmodels expressions as :meth:`_costs` and :meth:`migration`: both all-to-alls' seconds when
        the busiest GPU moves r token rows ``[max_rows + 1]``, and a GPU's fetch seconds of n experts from
        its own node and from another node ``[max_moved + 1]`` each (float64)."""
        a2a2 = 2.0 * np.asarray(self.a2a(np.arange(max_rows + 1, dtype=np.float64)), np.float64)
        b = np.arange(max_moved + 1, dtype=np.float64) * self.sh.expert_bytes
        t_in = hwmodels.weight_transfer_time(b, self.gpu, intra_node=True, calibration=self.cal)
        t_out = hwmodels.weight_transfer_time(b, self.gpu, intra_node=False, inter_node_bw=self.cfg.inter_node_bw,
                                              calibration=self.cal)
        return a2a2, np.asarray(t_in, np.float64), np.asarray(t_out, np.float64)

    def migration(self, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bytes and blocking seconds of ``moved[n, G, 2]`` received experts (own node, other node)."""
        b = moved.astype(np.float64) * self.sh.expert_bytes
        t_in = hwmodels.weight_transfer_time(b[..., 0], self.gpu, intra_node=True, calibration=self.cal)
        t_out = hwmodels.weight_transfer_time(b[..., 1], self.gpu, intra_node=False, inter_node_bw=self.cfg.inter_node_bw,
                                              calibration=self.cal)
        return b.sum((-1, -2)), np.maximum(t_in, t_out).max(-1)


# ---------------------------------------------------------------- load
def _recorded_counts(trace: str) -> np.ndarray:
    """``traces.load_expert_counts`` of the config's ``trace``; its ``TraceError`` says first that
    ExpertPlacement reads expert-load counts, and a built-in request trace's name (``azure_conv``)
    is one too (was 'no such file')."""
    from traces.builtin import resolve_builtin
    from traces.moe import COUNTS_FORMAT

    path = Path(trace)
    if not path.exists() and resolve_builtin(trace) is not None:
        raise traces.TraceError(f"ExpertPlacement reads expert-load counts: {trace!r} is a built-in request trace "
                                f"(arrivals and token counts of requests), not expert-load counts; {COUNTS_FORMAT}")
    try:
        return traces.load_expert_counts(path)
    except traces.TraceError as err:
        raise traces.TraceError(f"ExpertPlacement reads expert-load counts: {err}") from None


class LoadSource:
    """Episodes of expert counts ``[(intervals + 1) * interval_steps, layers, E]`` (int32)."""

    # Distinct generated episodes per split (generator seeds derive from the episode's window index).
    GENERATED_WINDOWS = 1 << 30

    def __init__(self, cfg: ExpertPlacementConfig, sh: Shape):
        self.cfg, self.sh = cfg, sh
        self.steps = (cfg.intervals + 1) * cfg.interval_steps
        self.recorded: np.ndarray | None = None
        if cfg.trace != "default":
            a = _recorded_counts(cfg.trace)
            if a.shape[2] != sh.E:
                raise ValueError(f"ExpertPlacement: {cfg.trace}: counts have {a.shape[2]} experts, model "
                                 f"{cfg.model} has {sh.E}")
            if a.shape[1] < sh.L:
                raise ValueError(f"ExpertPlacement: {cfg.trace}: counts have {a.shape[1]} layers, layers={sh.L}")
            cut = round(a.shape[0] * (1 - cfg.held_out_frac))
            part = {"train": a[:cut], "test": a[cut:], "all": a}[cfg.split][:, :sh.L]
            if part.shape[0] < self.steps:
                raise ValueError(f"ExpertPlacement: {cfg.trace}: the {cfg.split} part has {part.shape[0]} steps, an "
                                 f"episode needs (intervals + 1) * interval_steps = {self.steps}")
            self.recorded = part.astype(np.int32)

    @property
    def n_windows(self) -> int:
        """Distinct episodes: start steps of the recorded part, or generated episodes."""
        if self.recorded is not None:
            return self.recorded.shape[0] - self.steps + 1
        return self.GENERATED_WINDOWS

    def episode(self, window: int, drift: float, out: np.ndarray | None = None) -> np.ndarray:
        """Counts of episode ``window`` (in ``[0, n_windows)``) at generator drift ``drift``; written
        into ``out`` (int32 [steps, layers, E]) and returned when given."""
        if self.recorded is not None:
            n = self.n_windows
            start = (window * 7919) % n  # a stride, so that consecutive windows differ
            if out is None:
                return self.recorded[start:start + self.steps]
            out[:] = self.recorded[start:start + self.steps]
            return out
        # Generator seeds: even for train, odd for the held-out split, so the two never share one.
        ss = np.random.SeedSequence([window, 0x6570])
        gseed = int(ss.generate_state(1, np.uint64)[0] >> np.uint64(2)) * 2 + SPLITS[self.cfg.split]
        gen = traces.ExpertLoadGenerator(self.sh.L, self.sh.E, self.sh.k, self.sh.tokens_per_step,
                                         zipf_s=self.cfg.zipf_s, drift=drift, layer_corr=self.cfg.layer_corr,
                                         phase_shift_every=self.cfg.phase_shift_every, seed=gseed)
        c = gen.generate(self.steps)  # counts <= tokens_per_step: int32 holds them
        if out is None:
            return c.astype(np.int32)
        out[:] = c
        return out


class PlacementSim:
    """n episodes: loads, placements, load history and cost accounting (no decision logic)."""

    def __init__(self, n: int, cfg: ExpertPlacementConfig):
        self.n, self.cfg = n, cfg
        self.sh = sh = shape_of(cfg)
        self.cost = CostModel(cfg, sh)
        self.load = LoadSource(cfg, sh)
        self.counts = np.zeros((n, self.load.steps, sh.L, sh.E), np.int32)
        self.place = np.zeros((n, sh.L, sh.P), np.int64)
        self.last = np.zeros((n, sh.L, sh.E))  # last step's load / mean expert load
        self.window = np.zeros((n, sh.L, sh.E))  # last interval's mean load (the EPLB window)
        self.slow = np.zeros((n, sh.L, sh.E))  # EMA of interval means, 4-interval horizon
        self.next_share = np.zeros((n, sh.L, sh.E))  # same-index expert's window load at layer l+1
        # MoE seconds of the last interval per layer (summed over its steps) on the placement it was played on
        # (the warm-up interval's on the initial placement): the observation's unit of time
        self.last_moe_s = np.zeros((n, sh.L))
        self.interval = np.zeros(n, np.int64)
        self.drift = np.zeros(n)
        self.acc = np.zeros((n, 8))  # moe_s, ffn_s, a2a_s, imbalance, a2a_bytes, layer-steps, mig_bytes, mig_s
        self._moved = np.zeros((n, sh.G, 2), np.int64)
        # The EPLB option of each rebalance as kernels.prepare_layer computed it (after interval k: EPLB on
        # interval k's mean load, dispatched over interval k, layer by layer): its placement and each step's FFN
        # time and peak GPU load; ``opt_ok[e, k, l]`` says they were written in the current episode. Where the
        # placement is the clairvoyant reference's of that interval (EPLB on its summed counts: usually), its
        # rows are reference_cost's, which reads them instead of dispatching again.
        I, T = cfg.intervals, cfg.interval_steps
        self.opt_place = np.zeros((n, I + 1, sh.L, sh.P), np.int16 if sh.E <= np.iinfo(np.int16).max else np.int64)
        self.opt_ffn = np.zeros((n, I + 1, sh.L, T))
        self.opt_peak = np.zeros((n, I + 1, sh.L, T), np.int64)
        self.opt_ok = np.zeros((n, I + 1, sh.L), np.bool_)
        self.mean_expert_load = sh.tokens_per_step * sh.k / sh.E
        self.init_place = initial_placement(sh)

    # --- episodes
    def reset(self, envs: np.ndarray, windows: Sequence[int], drifts: Sequence[float]) -> None:
        """Start episode ``windows[i]`` (see ``LoadSource.episode``) at drift ``drifts[i]`` in env
        ``envs[i]``."""
        for e, w, d in zip(envs, windows, drifts):
            self.drift[e] = d
            self.load.episode(int(w), float(d), out=self.counts[e])
        self.place[envs] = self.init_place
        self.interval[envs] = 0
        self.opt_ok[envs] = False
        self.acc[envs] = 0.0
        self.last[envs] = self.window[envs] = self.slow[envs] = 0.0
        self._observe_interval(envs, 0, first=True)  # warm-up interval: history only, not scored
        warm = self.cost.dispatch_costs(self.interval_counts(envs, 0), self.place[envs])
        self.last_moe_s[envs] = warm["moe_s"].sum(1)

    def interval_counts(self, envs: np.ndarray, k: int | np.ndarray) -> np.ndarray:
        """Counts of interval k (0 = warm-up) for ``envs``: [len(envs), T, L, E]."""
        T = self.cfg.interval_steps
        k = np.broadcast_to(np.asarray(k), envs.shape)
        idx = k[:, None] * T + np.arange(T)[None, :]
        return self.counts[envs[:, None], idx]

    def _observe_interval(self, envs: np.ndarray, k, first: bool = False) -> None:
        c = self.interval_counts(envs, k).astype(np.float64) / self.mean_expert_load
        w = c.mean(1)
        self.last[envs] = c[:, -1]
        self.window[envs] = w
        self.slow[envs] = w if first else 0.75 * self.slow[envs] + 0.25 * w
        self.next_share[envs, :-1] = w[:, 1:]
        self.next_share[envs, -1] = w[:, -1]

    # --- simulation
    def run_interval(self, envs: np.ndarray, new_place: np.ndarray, bound: bool = False) -> np.ndarray:
        """Move ``envs`` to ``new_place`` and play their next interval; returns each env's cost in
        seconds (MoE time summed over steps and layers + migration blocking)."""
        k = self.interval[envs] + 1
        counts = self.interval_counts(envs, k)
        if bound:
            c = self.cost.bound_costs(counts)
            mig_b = mig_s = np.zeros(len(envs))
        else:
            moved = self._moved[: len(envs)]
            migration_counts(self.place[envs], new_place, self.sh.G, self.sh.gpn, self.sh.E, moved)
            mig_b, mig_s = self.cost.migration(moved)
            c = self.cost.dispatch_costs(counts, new_place)
            self.place[envs] = new_place
        acc = self.acc[envs]
        for j, key in enumerate(("moe_s", "ffn_s", "a2a_s", "imbalance", "a2a_bytes")):
            acc[:, j] += c[key].sum((1, 2))
        acc[:, 5] += c["moe_s"][0].size
        acc[:, 6] += mig_b
        acc[:, 7] += mig_s
        self.acc[envs] = acc
        self.last_moe_s[envs] = c["moe_s"].sum(1)
        self.interval[envs] = k
        self._observe_interval(envs, k)
        return c["moe_s"].sum((1, 2)) + mig_s

    def done(self, envs: np.ndarray) -> np.ndarray:
        return self.interval[envs] >= self.cfg.intervals

    # --- references over the whole episode (privileged: the simulator knows the load sequence)
    def reference_cost(self, e: int, kind: str) -> float:
        """Total cost of env e's current episode under 'round_robin' (the initial placement kept)
        or 'eplb_clairvoyant' (EPLB on each interval's true load), computed without touching state."""
        sh, I = self.sh, self.cfg.intervals
        envs = np.full(I, e)
        counts = self.interval_counts(envs, np.arange(1, I + 1))
        places = np.empty((I, sh.L, sh.P), np.int64)
        if kind == "round_robin":
            places[:] = self.init_place
            old = places
        elif kind == "eplb_clairvoyant":
            w = counts.sum(1).astype(np.float64)
            for i in range(I):
                for l in range(sh.L):
                    A.eplb(w[i, l], sh.P, sh.groups, sh.nodes, sh.G, places[i, l])
            old = np.concatenate([self.init_place[None], places[:-1]])
        else:
            raise ValueError(f"unknown reference {kind!r}")
        moved = np.zeros((I, sh.G, 2), np.int64)
        migration_counts(old, places, sh.G, sh.gpn, sh.E, moved)
        _, mig_s = self.cost.migration(moved)
        if kind == "round_robin" or not self.opt_ok[e, 1:].any():
            return float(self.cost.dispatch_costs(counts, places)["moe_s"].sum() + mig_s.sum())
        # clairvoyant: the rows the kernels kept (the same placement on the same counts), the others dispatched here
        ok = self.opt_ok[e, 1:] & (self.opt_place[e, 1:] == places).all(-1)  # [I, L]
        ffn = np.empty((I, self.cfg.interval_steps, sh.L))
        peak = np.empty(ffn.shape, np.int64)
        ffn.transpose(0, 2, 1)[ok] = self.opt_ffn[e, 1:][ok]
        peak.transpose(0, 2, 1)[ok] = self.opt_peak[e, 1:][ok]
        i, l = np.nonzero(~ok)
        if i.size:
            self.cost._fit_table(counts)
            f, p, _ = dispatch_costs(np.ascontiguousarray(counts[i, :, l][:, :, None]),
                                     np.ascontiguousarray(places[i, l][:, None]), sh.S, sh.G,
                                     self.cfg.dispatch == "even", self.cost.ffn_table, self.cost.latency)
            ffn.transpose(0, 2, 1)[i, l] = f[:, :, 0]
            peak.transpose(0, 2, 1)[i, l] = p[:, :, 0]
        return float(self.cost.moe_s(ffn, peak).sum() + mig_s.sum())

    def clairvoyant_placement(self, envs: np.ndarray) -> np.ndarray:
        """EPLB on each env's true next-interval load: [len(envs), L, P]."""
        sh = self.sh
        w = self.interval_counts(envs, self.interval[envs] + 1).sum(1).astype(np.float64)
        out = np.empty((len(envs), sh.L, sh.P), np.int64)
        for i in range(len(envs)):
            for l in range(sh.L):
                A.eplb(w[i, l], sh.P, sh.groups, sh.nodes, sh.G, out[i, l])
        return out

    def metrics(self, e: int, normalize: bool = True) -> dict[str, float]:
        """The issue's episode metrics for env e (envs.metrics.placement_metrics)."""
        from envs.metrics import placement_metrics

        a = self.acc[e]
        refs = (self.reference_cost(e, "round_robin"), self.reference_cost(e, "eplb_clairvoyant")) if normalize else None
        return placement_metrics(moe_s=a[0], ffn_s=a[1], a2a_s=a[2], imbalance=a[3], a2a_bytes=a[4], layer_steps=a[5],
                                 migration_bytes=a[6], migration_s=a[7], tokens_per_step=self.sh.tokens_per_step,
                                 gpus=self.sh.G, model_moe_layers=self.sh.moe_layers, sim_layers=self.sh.L,
                                 references=refs, extra={"drift": float(self.drift[e])})
