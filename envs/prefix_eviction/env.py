"""servegym/PrefixEviction-v0: which prefix-cache block to evict when an insertion needs room.

A prefix KV cache of C blocks replays a trace's block chains (Mooncake ``hash_ids``: 512-token
blocks; equal ids = equal prefixes) one request at a time. A decision comes each time a block
must be inserted into a full cache and at least two blocks could go: the action picks one of
the K candidates. ``candidate_set="sampled"`` (default): LRU's own victim first, then K-1
evictable blocks drawn at random (LRB's sampled candidates); ``"lru"``: the K least recently used
evictable blocks (Cold-RL's setting). Measured on held-out Mooncake, Belady restricted to the K
oldest blocks gains almost nothing over LRU (they are tail blocks of one stale conversation),
while restricted to the sampled set it gets most of the way to full Belady, so the default is the
one where the decision matters. Semantics of hits, pinning, stranding and recency:
``envs.prefix_eviction.kernels``.

Part-filled blocks (``full_blocks_only``, default off): a Mooncake-format trace names every block of a
prompt, the last one part-filled, and the scenarios cache it like any block; on, only full blocks are
cached, as vLLM's automatic prefix caching does ("We only cache full blocks", its
docs/design/prefix_caching.md): a request's part-filled block is recomputed, never referenced.

Leaf-only eviction (``evict_leaves_only``, default on; chain mode): the candidates offered to a
deciding policy are leaves of the cached prefix tree (no cached block below them), as SGLang's
radix cache evicts (``python/sglang/srt/mem_cache/radix_cache.py``, ``RadixCache.evict``: a heap
of the leaves ``_collect_leaves`` returns, keyed by last access time). Evicting an inner block
strands its cached descendants (they cannot hit until the prefix is re-inserted); the zoo agent
trained without the constraint did that in 79-81% of its evictions on an unseen Mooncake-format
trace (issue 21). Two facts make the constraint safe:

- It never empties a candidate set: a block pinned by the request being inserted has its cached
  ancestors pinned too (the request references them first), so below any evictable block every
  cached block is evictable, and the deepest of them is an evictable leaf.
- It costs the Belady bound nothing: a request that references a block references each of its
  ancestors earlier, so an inner block's next use comes strictly before each of its cached
  descendants' (or all are never used again), and Belady's victim (farthest next use;
  never-used-again ones least recently used first, and a request stamps its ancestors more
  recently than their descendants) is always a leaf. Offered every evictable block
  (``candidate_set="lru"``, ``candidates`` >= the capacity), Belady among the candidates makes
  the same hits with the constraint as without it, which is full Belady's
  (``tests/test_prefix_eviction_leaf.py`` checks both on random chain traces). Among sampled
  candidates no such exact statement holds (the draws differ); the measured hit ratios of Belady
  among leaf candidates, among all candidates and of full Belady are in this env's README.

The heuristics the kernel runs natively (``set_ranking(name, native=True)``: lru, lfu, s3fifo,
...) keep the eviction rule of the system they are named after whatever this field says (vLLM's
LRU may evict an inner block; ``lru_leaf`` is SGLang's); the constraint shapes what a policy that
decides (a learned agent, ``belady_candidates``) is offered, and the LRU victims of its warm-up.

Observation: ``GLOBAL_FEATURES`` then ``CANDIDATE_FEATURES`` for each of the K candidates
(recency, references, inter-reference time, depth, cached descendants, whether it is stranded,
tokens, the prefill seconds its loss would cost at its position from hwmodels, tenant, LRU's
victim, and how often its block id was evicted before: S3-FIFO's ghost-hit signal). The
future (next-use times) is never observed; Belady reads it through the privileged
``set_ranking("belady")`` the oracle's factory calls, and imitation learning through
``teacher_actions``/``teacher_targets``, not through the observation.

Reward: prefill GPU-seconds saved by hits (``prefill_saved_s``: hwmodels' step time of the
prompt's prefill minus that of the uncached rest), credited when a request looks up its prefix,
so each step's reward is the saving of the requests replayed since the previous decision.

Capacity: ``capacity_frac`` of the distinct blocks of the trace part played (``split``), rounded; a
capacity_frac whose capacity rounds under 2 blocks (``MIN_CAPACITY_BLOCKS``) is refused when the env is built
(``capacity_blocks``). Episodes are windows of ``window_requests`` consecutive requests (the last
window of a split takes the remainder); before a window, the ``warmup_requests`` requests that
precede it in the same split are replayed unscored, each victim the first candidate of the
env's ranking (LRU for a learned agent), so an episode starts from a warm cache that no policy
under test chose; the first window of a split starts empty, as the trace does.

Metrics per episode (``envs.metrics`` has no cache-only definition, so they are defined here):
``block_hit_ratio`` (hit block references / block references), ``token_hit_ratio``,
``prefill_s_saved``, ``ttft_p50_s``/``ttft_p99_s`` (``envs.prefix_eviction.ttft``: the window
replayed on one replica of the cluster model at ``ttft_load`` of its capacity with these hits),
and the ceiling ``block_hit_ratio_infinite`` of an infinite cache over the same window. Every window a
reset can draw, scaled at ``ttft_load``, must fit the float64 clock and keep its arrivals distinct float64
instants (when the env is built: ``ValueError`` naming ttft_load, a window, and for too high a ttft_load the
largest that works).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, replace
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

import hwmodels
import traces
from envs.prefix_eviction import kernels as K
from envs.core.capacity import NoSteadyState, measure_capacity_rps
from envs.core.engine import DEFAULT_PROFILE, Engine, EngineSpec
from envs.core.mixture import (
    Part,
    WorkloadEntry,
    normalize_workloads,
    part_config,
    parts_of,
    too_few_requests,
)
from envs.core.workload import (
    TooFewRequests,
    TraceUnsuited,
    build_workload,
    check_arrival_gaps,
    check_clock_span,
    check_held_out_frac,
)
from envs.config_check import check_mixture, check_sizes, make_config
from envs.metrics import percentile
from envs.native_vec import NativeVecEnv, VecEnvView, item_features
from envs.vector import NativeVectorEnv
from envs.prefix_eviction.ttft import replay_ttft
from traces.checks import is_real, positive_real

ENV_ID = "servegym/PrefixEviction-v0"
DEFAULT_CAPACITIES = (0.01, 0.05, 0.10, 0.25)
CANDIDATE_SETS = ("sampled", "lru")
RANKINGS = {"lru": K.R_LRU, "lru_leaf": K.R_LRU_LEAF, "fifo": K.R_FIFO, "lfu": K.R_LFU,
            "gdsf": K.R_GDSF, "belady": K.R_BELADY, "s3fifo": K.R_S3FIFO}


@dataclass(frozen=True)
class PrefixEvictionConfig:
    """Everything that defines a scenario; ``--env-kwargs`` set these fields."""

    trace: str | traces.Trace = "default"  # "default" = the mooncake_conv generator
    split: str = "train"  # "train" | "test" (held-out) | "all"
    held_out_frac: float = 0.3
    capacity_frac: float | tuple[float, ...] = DEFAULT_CAPACITIES
    chain: bool = True  # False: blocks are independent objects (textbook cache simulation)
    candidates: int = 16  # K
    candidate_set: str = "sampled"  # "sampled" (LRU's victim + K-1 random blocks) | "lru" (K oldest)
    # Chain mode: candidates are leaves of the cached prefix tree only (SGLang; module docstring).
    # Off = the behaviour before issue 21 (scenario ids up to prefix_eviction/.../v2).
    evict_leaves_only: bool = True
    # True: only full blocks are cached, as vLLM's automatic prefix caching does (docs/design/prefix_caching.md:
    # "We only cache full blocks"); a request's part-filled last block is recomputed, never inserted. False (the
    # scenarios' setting): it is cached like any block, though its hash rarely recurs (the next call re-sends a
    # longer context).
    full_blocks_only: bool = False
    teacher_horizon: float = 4.0  # imitation targets only: see PrefixEvictionVecEnv.teacher_targets
    teacher_clip: float = 16.0  # imitation targets only: see PrefixEvictionVecEnv.teacher_values
    window_requests: int = 1000
    warmup_requests: int = 1000
    model: str = "Llama-3.1-8B"
    gpu: str = "H100"
    tp: int = 1
    ttft_load: float = 0.8  # offered load of the TTFT replay, share of the no-cache capacity
    trace_seed: int = 0
    trace_params: tuple[tuple[str, Any], ...] = ()  # forwarded to traces.load_trace
    window_order: str = "random"  # "random" | "sequential" (env e plays windows e, e+E, ...)
    # Training on a distribution (envs.core.mixture): built-in trace names and file paths with prefix
    # chains (each may be a (name, trace_params) pair: its own traces.load_trace parameters) that
    # replace trace; each episode draws a family (and generator seed) uniformly, then a
    # window, then a capacity (a fraction of that part's distinct blocks).
    workloads: tuple[WorkloadEntry, ...] | str = ()
    workload_seeds: int = 1  # generator seeds per built-in family in workloads (trace_seed, trace_seed + 1, ...)

    def capacities(self) -> tuple[float, ...]:
        c = self.capacity_frac
        vals = (c,) if isinstance(c, (int, float)) else tuple(c)
        if not vals or any(not (0.0 < float(v) <= 1.0) for v in vals):
            raise ValueError(f"PrefixEviction: capacity_frac must be in (0, 1], got {c!r}")
        return tuple(float(v) for v in vals)


class Scenario(NamedTuple):
    """Read-only arrays the kernels take (``sc``): the trace part as block references."""

    chain: bool
    ref_block: np.ndarray  # int32 [R], dense block id of each reference
    ref_tokens: np.ndarray  # int32 [R], tokens of the block in that request
    next_ref: np.ndarray  # int64 [R], index of the next reference to the same block (NEVER)
    req_off: np.ndarray  # int64 [N + 1], request q's references are req_off[q]:req_off[q+1]
    req_prompt: np.ndarray  # int64 [N]
    req_tenant: np.ndarray  # int32 [N] (0 without tenants)
    parent: np.ndarray  # int32 [U], block id of the parent (-1 for a first block)
    depth: np.ndarray  # int32 [U]
    tokens: np.ndarray  # int32 [U]
    cost: np.ndarray  # float64 [U], prefill seconds of the block at its position
    cost0: float  # cost of a full first block (feature scale)
    coeffs: np.ndarray  # hwmodels step-time coefficients
    # float64 [U, 4], each block's observation features that never change (``_block_feat``): depth,
    # tokens, cost (CANDIDATE_FEATURES' values), then 0 (a row is one 32-byte piece of a cache line)
    block_feat: np.ndarray
    log1p_int: np.ndarray  # float64 [kernels.LOG1P_INTS], log1p(i) from libm (kernels.log1p_table)


def _block_feat(depth: np.ndarray, tokens: np.ndarray, cost: np.ndarray, cost0: float, block_size: int) -> np.ndarray:
    """``Scenario.block_feat``: per block id, the ``depth``, ``tokens`` and ``cost`` candidate features
    exactly as the kernels computed them per candidate (libm's log1p of the depth / 6, tokens / block
    size, cost / cost0; IEEE division rounds the same whether numpy or numba does it)."""
    feat = np.zeros((len(depth), 4), np.float64)
    table = K.log1p_table(max(K.LOG1P_INTS, int(depth.max(initial=0)) + 1))
    feat[:, 0] = table[depth] / 6.0
    feat[:, 1] = tokens.astype(np.float64) / float(block_size)
    feat[:, 2] = cost / cost0
    return feat


@dataclass(frozen=True)
class Built:
    sc: Scenario
    n_blocks: int  # distinct blocks U
    block_size: int
    n_tenants: int
    starts: np.ndarray  # sequential windows [W]
    ends: np.ndarray
    prev_ref: np.ndarray  # int64 [R], previous reference to the same block (-1)
    arrival_s: np.ndarray
    output: np.ndarray
    engine: Engine
    ttft_scale: float
    name: str
    # Requests of the part that are not served, counted per window: failed in the trace, or
    # rejected by the engine at arrival (longer than the model's context or the KV pool).
    failed: np.ndarray  # int64 [W]
    rejected: np.ndarray  # int64 [W]
    # A workload mixture (config.workloads; envs.core.mixture), else empty / None. Parts are built
    # one by one and laid end to end: ids, references and requests of part p follow those of p - 1.
    parts: tuple[Part, ...] = ()
    request_groups: np.ndarray | None = None  # int64 [P + 1], request offsets of the parts
    window_groups: np.ndarray | None = None  # int64 [P + 1], offsets of the parts' sequential windows
    part_blocks: np.ndarray | None = None  # int64 [P], distinct blocks of each part (capacities scale with it)
    part_ttft_scale: np.ndarray | None = None  # float64 [P], each part's TTFT replay time scale
    # float64 [P] (P = 1 for one trace): each part's TTFT time scale at ttft_load 1 (the scale is rate / (ttft_load
    # x capacity)), NaN for a part replayed as recorded whatever the ttft_load (no steady state to measure)
    ttft_scale_per_load: np.ndarray | None = None

    def part_of_request(self, q: int) -> int:
        """Index of the part that holds request ``q`` (0 for a single trace)."""
        if self.request_groups is None:
            return 0
        return int(np.searchsorted(self.request_groups, q, side="right")) - 1


def _load_part(cfg: PrefixEvictionConfig) -> traces.Trace:
    if cfg.workloads:
        raise AssertionError("a workload mixture loads its parts in _build_mixture")
    check_held_out_frac(cfg.held_out_frac, "PrefixEviction")
    if isinstance(cfg.trace, traces.Trace):
        trace = cfg.trace
    else:
        name = "mooncake_conv" if cfg.trace == "default" else cfg.trace
        trace = traces.load_trace(name, seed=cfg.trace_seed, **dict(cfg.trace_params))
    if trace.block_ids is None or trace.block_size is None:
        raise TraceUnsuited(f"PrefixEviction: trace {trace.meta.name!r} has no prefix block ids "
                            "(use mooncake_conv or a Mooncake-format file)",
                            "prefix block ids (a Mooncake-format file with hash_ids, or the built-in mooncake_conv)",
                            "has none")
    if cfg.split == "all":
        return trace
    if cfg.split not in ("train", "test"):
        raise ValueError(f"PrefixEviction: split must be 'train', 'test' or 'all', got {cfg.split!r}")
    train, test = traces.split(trace, cfg.held_out_frac)
    return train if cfg.split == "train" else test


def _chain_tree(ref_block: np.ndarray, pos: np.ndarray, U: int, chain: bool, name: str):
    """Parent and depth of each block id; in chain mode an id must have one parent (hash chains)."""
    par_ref = np.where(pos > 0, np.roll(ref_block, 1), -1).astype(np.int32)
    parent = np.full(U, -2, np.int32)
    depth = np.zeros(U, np.int32)
    parent[ref_block] = par_ref
    depth[ref_block] = pos
    if chain:
        bad = np.flatnonzero((parent[ref_block] != par_ref) | (depth[ref_block] != pos))
        if bad.size:
            raise ValueError(
                f"PrefixEviction: trace {name!r}: block reference {int(bad[0])} has a different "
                "parent or position than another reference to the same id, so ids are not "
                "prefix-hash chains; use chain=false to treat blocks as independent objects")
    return parent, depth


def _served(trace: traces.Trace, eng: Engine) -> tuple[traces.Trace, np.ndarray, np.ndarray, np.ndarray]:
    """The requests a replica serves (as ``envs.core.replica.enqueue`` decides), with each
    served request's index in ``trace`` and the failed / rejected masks over ``trace``."""
    failed = np.zeros(len(trace), bool) if trace.failed is None else np.asarray(trace.failed)
    need = np.asarray(trace.prompt_tokens) + np.maximum(np.asarray(trace.output_tokens), 1)
    rejected = ~failed & ((need > eng.max_model_len) | (need > eng.capacity_blocks * eng.block_size))
    keep = np.flatnonzero(~failed & ~rejected)
    if keep.size == len(trace):
        return trace, keep, failed, rejected
    return trace.select(keep), keep, failed, rejected


@cache
def _build(cfg: PrefixEvictionConfig) -> Built:
    if cfg.workloads:
        return _build_mixture(cfg)
    return _build_from(cfg, _load_part(cfg))


def _build_from(cfg: PrefixEvictionConfig, whole: traces.Trace) -> Built:
    spec = EngineSpec(model=cfg.model, gpu=cfg.gpu, tp=cfg.tp)
    trace, kept, failed_mask, rejected_mask = _served(whole, spec.build(cache_on=True,
                                                                          chain_block_tokens=int(whole.block_size)))
    N = len(trace)
    W = int(cfg.window_requests)
    if W < 1 or cfg.warmup_requests < 0:
        raise ValueError(f"PrefixEviction: window_requests must be >= 1 and warmup_requests >= 0, "
                         f"got {cfg.window_requests}, {cfg.warmup_requests}")
    if N < W:
        raise TooFewRequests(f"PrefixEviction: trace {trace.meta.name!r} ({cfg.split}) has {N} "
                             f"request{'' if N == 1 else 's'}, "
                             f"fewer than one window of window_requests={W}", N, W,
                             has=f"has {N:,} that the engine serves ({cfg.split})")
    bs = int(trace.block_size)
    off = np.asarray(trace.block_offsets, np.int64)
    lens = np.diff(off)
    ids = np.asarray(trace.block_ids)
    prompt = np.asarray(trace.prompt_tokens, np.int64)
    if cfg.full_blocks_only:  # each request's first prompt // block_size blocks (a trace holds ceil(prompt / bs))
        full = np.minimum(lens, prompt // bs)
        ids = ids[(np.arange(len(ids)) - np.repeat(off[:-1], lens)) < np.repeat(full, lens)]
        lens, off = full, np.concatenate([[0], np.cumsum(full)]).astype(np.int64)
    uniq, ref_block = np.unique(ids, return_inverse=True)
    ref_block = ref_block.astype(np.int32)
    U, R = len(uniq), len(ref_block)
    pos = (np.arange(R) - np.repeat(off[:-1], lens)).astype(np.int32)
    last = np.repeat(np.minimum(prompt - (lens - 1) * bs, bs), lens)
    is_last = pos == np.repeat(lens - 1, lens)
    ref_tokens = np.where(is_last, last, bs).astype(np.int32)
    parent, depth = _chain_tree(ref_block, pos, U, cfg.chain, trace.meta.name)
    tokens = np.zeros(U, np.int32)
    tokens[ref_block[::-1]] = ref_tokens[::-1]  # first reference's size
    order = np.argsort(ref_block, kind="stable")
    same = ref_block[order[1:]] == ref_block[order[:-1]]
    next_ref = np.full(R, K.NEVER, np.int64)
    next_ref[order[:-1][same]] = order[1:][same]
    prev_ref = np.full(R, -1, np.int64)
    prev_ref[order[1:][same]] = order[:-1][same]
    coeffs = np.ascontiguousarray(
        hwmodels.StepTimeModel(hwmodels.get_model(cfg.model), hwmodels.get_gpu(cfg.gpu), tp=cfg.tp,
                               profile=DEFAULT_PROFILE).coeffs,
        dtype=np.float64)
    a = depth.astype(np.float64) * bs
    b = a + tokens

    def prefill(x):
        return hwmodels.iteration_time(coeffs, x, x * (x + 1.0) / 2.0, 0.0, 0.0)

    cost = np.asarray(prefill(b) - prefill(a), np.float64)
    cost0 = float(prefill(float(bs)) - prefill(0.0))
    tenant = trace.tenant
    n_tenants = int(np.max(tenant)) + 1 if tenant is not None and N else 0
    sc = Scenario(
        chain=bool(cfg.chain), ref_block=ref_block, ref_tokens=ref_tokens, next_ref=next_ref,
        req_off=off, req_prompt=prompt,
        req_tenant=(np.asarray(tenant, np.int32) if tenant is not None else np.zeros(N, np.int32)),
        parent=parent, depth=depth, tokens=tokens, cost=cost, cost0=cost0, coeffs=coeffs,
        block_feat=_block_feat(depth, tokens, cost, cost0, bs), log1p_int=K.log1p_table(),
    )
    n_win = N // W
    starts = np.arange(n_win, dtype=np.int64) * W
    ends = np.append(starts[1:], N)
    # TTFT replay: one replica of the cluster model, load relative to its no-cache capacity.
    eng = spec.build(cache_on=True, chain_block_tokens=bs)
    eng = eng._replace(max_output=max(int(trace.output_tokens.max()), 1))
    # Unserved requests between the first request of a window and the first of the next.
    first = kept[starts]
    bounds = np.append(first, len(whole))
    bounds[0] = 0
    cum_f = np.concatenate([[0], np.cumsum(failed_mask)])
    cum_r = np.concatenate([[0], np.cumsum(rejected_mask)])
    n_failed = cum_f[bounds[1:]] - cum_f[bounds[:-1]]
    n_rejected = cum_r[bounds[1:]] - cum_r[bounds[:-1]]
    wl, _ = build_workload(trace, min(1024, N), 0.7, cfg.trace_seed)
    positive_real(cfg.ttft_load, "PrefixEviction: ttft_load")
    try:
        capacity = measure_capacity_rps(eng, wl, source=f"PrefixEviction: trace {trace.meta.name!r}")
    except NoSteadyState:
        capacity = np.inf  # a handful of requests: replayed as recorded (below)
    rate = trace.rate_rps
    # A trace too short to measure a steady state (a handful of requests) replays as recorded.
    # (a product that underflows, ttft_load=5e-324, is a stretch past any clock: refused when built)
    denom = cfg.ttft_load * capacity
    follows = np.isfinite(capacity) and 0 < rate < np.inf
    scale = (rate / denom if denom > 0 else np.inf) if follows else 1.0
    return Built(sc, U, bs, n_tenants, starts, ends, prev_ref, np.asarray(trace.arrival_s, np.float64),
                 np.asarray(trace.output_tokens, np.int64), eng, scale,
                 trace.meta.name, n_failed.astype(np.int64), n_rejected.astype(np.int64),
                 ttft_scale_per_load=np.array([rate / capacity if follows else np.nan]))


def _build_mixture(cfg: PrefixEvictionConfig) -> Built:
    """Every part of ``cfg.workloads`` built alone (``_build_from``), then laid end to end: block
    ids, references and requests of each part offset past the previous ones, so that no block,
    next-use link or window crosses from one part into another."""
    parts = parts_of(cfg, "PrefixEviction")
    builts = []
    for p in parts:
        try:
            whole = _load_part(part_config(cfg, p))
        except (traces.TraceError, ValueError) as err:
            raise ValueError(f"PrefixEviction: workloads entry {p.name!r} (seed {p.seed}): {err}") from None
        try:
            builts.append(_build_from(cfg, whole))
        except TooFewRequests as short:
            raise too_few_requests("PrefixEviction", cfg, p, short, held_out=True) from None
    sizes = {b.block_size for b in builts}
    if len(sizes) > 1:
        raise ValueError(f"PrefixEviction: workloads mix prefix-block sizes {sorted(sizes)} "
                         f"({', '.join(f'{p.label}: {b.block_size}' for p, b in zip(parts, builts))}); "
                         "a prefix cache indexes one block size")
    U = np.cumsum([0] + [b.n_blocks for b in builts])
    R = np.cumsum([0] + [len(b.sc.ref_block) for b in builts])
    N = np.cumsum([0] + [len(b.sc.req_prompt) for b in builts])
    Wn = np.cumsum([0] + [len(b.starts) for b in builts])

    def cat(get, shift=None, keep=None):
        out = []
        for k, b in enumerate(builts):
            a = np.asarray(get(b))
            if shift is not None:
                add = shift[k]
                a = a + add if keep is None else np.where(a == keep, a, a + add)
            out.append(a)
        return np.concatenate(out)

    sc0 = builts[0].sc
    depth, tokens, cost = cat(lambda b: b.sc.depth), cat(lambda b: b.sc.tokens), cat(lambda b: b.sc.cost)
    sc = Scenario(
        chain=sc0.chain,
        ref_block=cat(lambda b: b.sc.ref_block, U).astype(np.int32),
        ref_tokens=cat(lambda b: b.sc.ref_tokens),
        next_ref=cat(lambda b: b.sc.next_ref, R, K.NEVER).astype(np.int64),
        req_off=np.concatenate([b.sc.req_off[:-1] + R[k] for k, b in enumerate(builts)] + [[R[-1]]]).astype(np.int64),
        req_prompt=cat(lambda b: b.sc.req_prompt),
        req_tenant=cat(lambda b: b.sc.req_tenant).astype(np.int32),
        parent=cat(lambda b: b.sc.parent, U, -1).astype(np.int32),
        depth=depth,
        tokens=tokens,
        cost=cost,
        cost0=sc0.cost0,
        coeffs=sc0.coeffs,
        block_feat=_block_feat(depth, tokens, cost, sc0.cost0, builts[0].block_size),
        log1p_int=K.log1p_table(),
    )
    eng = builts[0].engine._replace(max_output=max(b.engine.max_output for b in builts))
    labels = [p.label for p in parts]
    return Built(
        sc, int(U[-1]), builts[0].block_size, max(b.n_tenants for b in builts),
        cat(lambda b: b.starts, N), cat(lambda b: b.ends, N), cat(lambda b: b.prev_ref, R, -1),
        cat(lambda b: b.arrival_s), cat(lambda b: b.output), eng, float("nan"),
        "mixture(" + ", ".join(dict.fromkeys(labels)) + ")",
        cat(lambda b: b.failed), cat(lambda b: b.rejected),
        parts, N.astype(np.int64), Wn.astype(np.int64), np.array([b.n_blocks for b in builts], np.int64),
        np.array([b.ttft_scale for b in builts], np.float64), cat(lambda b: b.ttft_scale_per_load),
    )


def build(cfg: PrefixEvictionConfig) -> Built:
    """The scenario of ``cfg``; fields that only steer episodes do not rebuild it."""
    return _build(replace(cfg, capacity_frac=DEFAULT_CAPACITIES, candidates=1, window_order="random",
                          evict_leaves_only=True, candidate_set="sampled", teacher_horizon=4.0,
                          teacher_clip=16.0))


class State(NamedTuple):
    """Mutable per-env arrays (``st`` in the kernels)."""

    iv: np.ndarray
    fv: np.ndarray
    where: np.ndarray  # int32 [E, U], slot of each block or -1
    desc: np.ndarray  # int32 [E, U], cached blocks in each block's subtree (chain mode)
    n_evict: np.ndarray  # int32 [E, U], evictions of each block id since the episode's warm-up began
    g_in: np.ndarray  # bool [E, U or 1], S3-FIFO ghost membership
    g_prev: np.ndarray
    g_next: np.ndarray
    key: np.ndarray  # int32 [E, C]
    free: np.ndarray
    lru_prev: np.ndarray
    lru_next: np.ndarray
    q_prev: np.ndarray
    q_next: np.ndarray
    heap: np.ndarray
    hpos: np.ndarray
    k1: np.ndarray
    k2: np.ndarray
    ins_t: np.ndarray
    last_t: np.ndarray
    prev_t: np.ndarray
    next_use: np.ndarray
    freq: np.ndarray
    pin: np.ndarray  # int32 [E, C], request that last referenced the slot's block (pinned while it runs)
    # uint64 [E, ceil(C / 32)], each slot's class in 2 bits (kernels.CLS_EMPTY / CLS_INNER / CLS_LEAF: no
    # cached block below it), 32 slots a word: what the sampled candidates' draws read
    slot_class: np.ndarray
    tenant: np.ndarray
    s3f: np.ndarray
    s3q: np.ndarray
    hit_tok: np.ndarray  # int64 [E, longest window], hit tokens of each request of the episode


# The per-slot fields a decision reads and writes together, packed into one 64-byte record per slot
# (a slot's candidate features, its eviction and the insertion into the freed slot read one cache line
# instead of twelve): (int64 field, its index in the record's 8 int64 words), then (int32 field, its
# index in the record's 16 int32 words, initial value). State keeps each field as a strided [E, C] view.
SLOT_I64 = (("ins_t", 0), ("last_t", 1), ("prev_t", 2), ("next_use", 3))
SLOT_I32 = (("key", 8, -1), ("freq", 9, 0), ("pin", 10, -1), ("tenant", 11, 0), ("lru_prev", 12, -1),
            ("lru_next", 13, -1), ("q_prev", 14, -1), ("q_next", 15, -1))


def _slot_records(E: int, C: int) -> dict[str, np.ndarray]:
    """The ``SLOT_I64`` and ``SLOT_I32`` fields as [E, C] views of one buffer of 64-byte records, each
    record starting at a multiple of 64 bytes (a cache line), with their initial values."""
    raw = np.zeros(E * C * 64 + 64, np.uint8)
    off = -raw.ctypes.data % 64
    rec64 = raw[off:off + E * C * 64].view(np.int64).reshape(E, C, 8)
    rec32 = rec64.view(np.int32)
    out = {name: rec64[:, :, i] for name, i in SLOT_I64}
    for name, i, init in SLOT_I32:
        out[name] = rec32[:, :, i]
        out[name][...] = init
    return out


def allocate(E: int, U: int, C: int, longest: int, ghost: bool) -> State:
    i32 = lambda *s: np.full(s, -1, np.int32)
    i64 = lambda *s: np.zeros(s, np.int64)
    G = U if ghost else 1
    return State(
        iv=i64(E, K.N_IV), fv=np.zeros((E, K.N_FV)), where=i32(E, U), desc=np.zeros((E, U), np.int32),
        n_evict=np.zeros((E, U), np.int32),
        g_in=np.zeros((E, G), np.bool_), g_prev=i32(E, G), g_next=i32(E, G),
        free=i32(E, C), heap=i32(E, C), hpos=i32(E, C), k1=np.zeros((E, C)), k2=i64(E, C),
        slot_class=np.zeros((E, (C + 31) // 32), np.uint64),
        s3f=np.zeros((E, C), np.int8), s3q=np.zeros((E, C), np.int8), hit_tok=i64(E, longest),
        **_slot_records(E, C),
    )


def observation_size(candidates: int) -> int:
    """Features in one env's observation: ``N_GLOBAL`` then ``N_CAND`` per candidate."""
    return K.N_GLOBAL + candidates * K.N_CAND


def memory_bytes(num_envs: int, candidates: int) -> int:
    """A lower bound on the bytes the observation arrays of a batch of ``num_envs`` take: observations [E, n_obs]
    float32 and the space's bounds (10 bytes a feature), the candidates [E, K] int64 and their mask (bool); the
    cache state (sized by the trace's blocks, known once it is loaded) not counted."""
    n_obs = observation_size(candidates)
    return (4 * num_envs + 10) * n_obs + 9 * num_envs * candidates


# The smallest cache an episode plays: an eviction chooses between at least two blocks that could go.
MIN_CAPACITY_BLOCKS = 2
# The fewest candidates an eviction offers: a choice between at least two blocks.
MIN_CANDIDATES = 2


def capacity_blocks(frac: float, blocks: int, trace: str) -> int:
    """The cache capacity in blocks, ``round(frac x blocks)`` (``blocks``: the distinct blocks of the trace part
    ``trace`` played). ``ValueError`` naming capacity_frac, its value, the trace's distinct blocks and the block
    count when that is under ``MIN_CAPACITY_BLOCKS`` (was raised to 2 blocks silently: capacity_frac=1e-308 played
    the same episodes as any capacity under 1.5 blocks)."""
    cap = round(frac * blocks)
    if cap < MIN_CAPACITY_BLOCKS:
        least = (MIN_CAPACITY_BLOCKS - 0.5) / blocks  # the smallest fraction that rounds to the minimum
        while round(least * blocks) < MIN_CAPACITY_BLOCKS:
            least = math.nextafter(least, math.inf)
        shown = next(t for d in range(3, 18) if round(float(t := f"{least:.{d}g}") * blocks) >= MIN_CAPACITY_BLOCKS)
        fix = (f"capacity_frac must be at least {shown} here" if least <= 1.0 else
               "no capacity_frac in (0, 1] reaches it on this trace")
        raise ValueError(f"PrefixEviction: capacity_frac={frac!r} x the {blocks:,} distinct blocks of trace "
                         f"{trace!r} is {cap} block{'s' if cap != 1 else ''} (round({frac * blocks:.3g})), under the "
                         f"{MIN_CAPACITY_BLOCKS} an eviction chooses between; {fix}")
    return cap


class PrefixEvictionVecEnv(NativeVecEnv):
    """E prefix caches stepped by one kernel call (SB3 VecEnv, no per-env objects).

    Episode selection (``NativeVecEnv.draw_episode``): ``window`` is the episode's first request
    (``window_order="random"``: any start of ``window_requests`` requests; in a workload mixture the
    index among every part's starts, part by part, as errors name it) or the index of a held-out
    window (``"sequential"``); the knob is ``capacity_frac``."""

    env_name = "PrefixEviction"
    episode_knob = "capacity_frac"
    episodes_independent_of_sweep = True  # each capacity sizes its own episodes' cache

    table_metrics = ("block_hit_ratio", "token_hit_ratio", "prefill_s_saved", "ttft_p50_s",
                     "ttft_p99_s", "block_hit_ratio_infinite", "return_mean")

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        return "capacity_frac", self.config.capacities()

    def __init__(self, num_envs: int = 1, config: PrefixEvictionConfig | None = None,
                 seed: int | None = None, **kwargs: Any):
        cfg = make_config(PrefixEvictionConfig, config, kwargs, "PrefixEviction")
        cfg = replace(cfg, capacity_frac=cfg.capacities(), chain=bool(cfg.chain),
                      trace_params=tuple(dict(cfg.trace_params).items()),
                      workloads=normalize_workloads(cfg.workloads, "PrefixEviction"))
        check_mixture(cfg, "PrefixEviction")
        if cfg.candidate_set not in CANDIDATE_SETS:
            raise ValueError(f"PrefixEviction: candidate_set must be one of {', '.join(CANDIDATE_SETS)}, "
                             f"got {cfg.candidate_set!r}")
        if not (isinstance(cfg.candidates, int) and cfg.candidates >= MIN_CANDIDATES):
            raise ValueError(f"PrefixEviction: candidates must be an integer >= {MIN_CANDIDATES}, "
                             f"got {cfg.candidates!r}")
        check_sizes("PrefixEviction", {"num_envs": num_envs, "candidates": cfg.candidates}, memory_bytes,
                    "the batch's observation arrays", minimums={"candidates": MIN_CANDIDATES})
        h = cfg.teacher_horizon
        if not is_real(h) or not h >= 0:
            raise ValueError(f"PrefixEviction: teacher_horizon must be a number >= 0 (capacities of block references), "
                             f"got {h!r}")
        if not is_real(cfg.teacher_clip) or not cfg.teacher_clip > 0:  # was refused only when teacher_values ran
            raise ValueError(f"PrefixEviction: teacher_clip must be a number > 0 (capacities of block references), "
                             f"got {cfg.teacher_clip!r}")
        self.config = cfg
        self.built = build(cfg)
        self.K = cfg.candidates
        bt = self.built
        self.caps = tuple(capacity_blocks(f, bt.n_blocks, bt.name) for f in cfg.capacities())
        # A mixture's capacities are fractions of each part's own distinct blocks.
        self.part_caps = None if bt.part_blocks is None else tuple(
            tuple(capacity_blocks(f, int(u), part.label) for f in cfg.capacities())
            for u, part in zip(bt.part_blocks, bt.parts))
        if self.part_caps is not None:
            self.caps = tuple(max(c) for c in zip(*self.part_caps))
        self._check_ttft_clock()
        n_obs = observation_size(self.K)
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (n_obs,), np.float32),
                         spaces.Discrete(self.K))
        E = num_envs
        self._longest = max(cfg.window_requests, int((bt.ends - bt.starts).max()))
        self.rank = K.R_LRU
        self.native = False
        self.state = allocate(E, bt.n_blocks, max(self.caps), self._longest, False)
        self._obs = np.zeros((E, n_obs), np.float32)  # the kernels write each feature rounded to float32
        self._mask = np.zeros((E, self.K), np.bool_)
        self._cands = np.zeros((E, self.K), np.int64)
        self._scratch = np.zeros(K.scratch_size(max(self.caps)), np.int64)
        self._noop = np.zeros(E, np.bool_)  # window needed no eviction: one no-op step ends it
        self._noop_reward = np.zeros(E)
        self._win = np.zeros((E, 2), np.int64)
        self._cap = np.zeros(E, np.int64)
        self._frac = np.zeros(E)
        self._all = np.arange(E, dtype=np.int64)
        if seed is not None:
            self.seed(seed)

    # --- privileged channel for heuristics and oracles
    def set_ranking(self, name: str, native: bool = False) -> None:
        """List candidates in the order of a heuristic (its victim first). Policies call this
        from their factory; Belady's order is the one place next-use times enter the env.
        ``native``: the kernel evicts the first candidate itself and never stops, so a whole
        window is one step (the ranking's own policy at kernel speed)."""
        self.native = bool(native)
        if name not in RANKINGS:
            raise ValueError(f"PrefixEviction: ranking must be one of {', '.join(RANKINGS)}, got {name!r}")
        self.rank = RANKINGS[name]
        if self.rank == K.R_S3FIFO and self.state.g_in.shape[1] == 1:
            bt = self.built
            self.state = allocate(self.num_envs, bt.n_blocks, max(self.caps), self._longest, True)

    def teacher_actions(self) -> np.ndarray:
        """Belady's choice among each env's current candidates: the one whose next use is
        farthest (never-again ones least recently used first, as the ``belady`` ranking breaks
        ties). Privileged, like ``set_ranking("belady")``: for imitation targets and for the
        bound a policy restricted to these candidates can reach, never for the observation."""
        st, c = self.state, self._cands
        rows = np.arange(self.num_envs)[:, None]
        nxt, last = st.next_use[rows, c], st.last_t[rows, c]
        never = self._mask & (nxt == K.NEVER)
        out = np.where(never.any(1), np.argmax(np.where(never, -last, np.iinfo(np.int64).min), 1),
                       np.argmax(np.where(self._mask, nxt, -1), 1))
        return out.astype(np.int64)

    def teacher_targets(self, horizon: float | None = None) -> np.ndarray:
        """Relaxed Belady (LRB, Song et al. NSDI'20): every legal candidate not referenced again
        within ``horizon`` (default ``teacher_horizon``) x capacity block references, plus
        Belady's own choice, is a good victim [E, K]. Privileged, as :meth:`teacher_actions`."""
        horizon = self.config.teacher_horizon if horizon is None else horizon
        st, c = self.state, self._cands
        rows = np.arange(self.num_envs)
        sc = self.built.sc
        now = sc.req_off[st.iv[rows, K.I_REQ]] + st.iv[rows, K.I_J]
        far = st.next_use[rows[:, None], c] - now[:, None] > horizon * self._cap[:, None]
        good = self._mask & far
        good[rows, self.teacher_actions()] = True
        return good

    def teacher_values(self, clip: float | None = None) -> np.ndarray:
        """Each candidate's next-use distance, the quantity Belady ranks by, as a regression target
        [E, K] float32: log1p(min(block references until its next use / capacity, ``clip``)) (default
        ``teacher_clip``; a block never used again gets log1p(clip)); 0 where the mask has no
        candidate. LRB (Song et al., NSDI'20) learns the same quantity (log time to next request)
        and evicts the largest prediction among sampled candidates. Privileged, as
        :meth:`teacher_actions`. ``ValueError`` for a clip that is not > 0."""
        clip = self.config.teacher_clip if clip is None else float(clip)
        if not clip > 0:
            raise ValueError(f"PrefixEviction: teacher_clip must be > 0, got {clip!r}")
        st, c = self.state, self._cands
        rows = np.arange(self.num_envs)
        now = self.built.sc.req_off[st.iv[rows, K.I_REQ]] + st.iv[rows, K.I_J]
        dist = (st.next_use[rows[:, None], c] - now[:, None]) / self._cap[:, None]
        return np.where(self._mask, np.log1p(np.clip(dist, 0.0, clip)), 0.0).astype(np.float32)

    # --- NativeVecEnv hooks
    def _reset_envs(self, envs: np.ndarray) -> None:
        for e in envs:
            self._reset_env(int(e))

    def _reset_env(self, e: int) -> None:
        bt, cfg = self.built, self.config
        caps = self.caps
        rng = self._rngs[e]
        N = len(bt.sc.req_prompt)
        sequential = cfg.window_order == "sequential"
        part_start = 0
        if bt.request_groups is None:
            w, frac = self.draw_episode(e, len(bt.starts) if sequential else N - cfg.window_requests + 1,
                                        cfg.capacities())
        else:
            # Random starts of part p: request_groups[p] .. request_groups[p + 1] - window_requests.
            g = bt.request_groups
            start_groups = np.concatenate([[0], np.cumsum(np.diff(g) - cfg.window_requests + 1)])
            groups = bt.window_groups if sequential else start_groups
            w, frac = self.draw_episode(e, int(groups[-1]), cfg.capacities(), groups)
            p = int(np.searchsorted(groups, w, side="right")) - 1
            part_start = int(g[p])
            caps = self.part_caps[p]
        ci = cfg.capacities().index(frac)
        if sequential:
            start, end = int(bt.starts[w]), int(bt.ends[w])
        else:  # a mixture's random windows are numbered across its parts' starts (start_groups)
            start = w if bt.request_groups is None else int(bt.request_groups[p] + (w - start_groups[p]))
            end = start + cfg.window_requests
        # The TTFT replay at the episode's end stretches its arrivals by the ttft_load's time scale.
        scale = bt.ttft_scale if bt.part_ttft_scale is None else float(bt.part_ttft_scale[bt.part_of_request(start)])
        check_clock_span(bt.arrival_s[end - 1:end] - bt.arrival_s[start], np.array([w]), np.array([scale]),
                         np.array([cfg.ttft_load]), "PrefixEviction", "ttft_load")
        self._win[e] = (start, end)
        self._cap[e] = caps[ci]
        self._frac[e] = cfg.capacities()[ci]
        warm = max(part_start, start - cfg.warmup_requests)
        self.state.iv[e, K.I_RNG] = int(rng.integers(1 << 62))
        self.state.iv[e, K.I_SAMPLED] = cfg.candidate_set == "sampled"
        self.state.iv[e, K.I_LEAF_ONLY] = cfg.evict_leaves_only and cfg.chain and not self.native
        more = K.reset_env(self.state, bt.sc, self.rank, e, caps[ci], warm, start, end, self.K,
                           not self.native, self._obs, self._mask, self._cands[e], self._scratch, bt.block_size,
                           bt.n_tenants)
        self._noop[e] = not more
        # Savings before the first decision are not a reward for any action; a window run with
        # no decision (native rankings) reports them all on its one step, so that its return
        # still equals prefill_s_saved.
        self._noop_reward[e] = self.state.fv[e, K.F_REWARD] if not more else 0.0
        if not more:
            self._obs[e] = 0.0
            self._mask[e] = False
            self._mask[e, 0] = True

    def _accept_actions(self, a: np.ndarray) -> np.ndarray:
        legal = self._mask[self._all, a]
        if not legal.all():
            e = int(np.argmin(legal))
            raise ValueError(f"PrefixEviction: action {int(a[e])} of env {e} names no candidate "
                             f"(legal: {np.flatnonzero(self._mask[e]).tolist()})")
        return a

    def advance(self) -> None:
        """One kernel call: every env evicts its chosen candidate and runs to its next decision
        (an env whose window needed no eviction ends on its no-op step)."""
        bt = self.built
        self._rew[:] = self._noop_reward
        self._term[:] = self._noop
        K.step_all(self.state, bt.sc, self.rank, self._live(), self._actions, self.K, self._obs,
                   self._mask, self._cands, self._scratch, self._rew, self._term, bt.block_size,
                   bt.n_tenants)

    def _live(self) -> np.ndarray:
        if not self._noop.any():
            return self._all
        return np.flatnonzero(~self._noop).astype(np.int64)

    def feature_names(self) -> list[str]:
        return item_features(K.GLOBAL_FEATURES, K.CANDIDATE_FEATURES, self.K, "cand")

    def action_meanings(self) -> list[str]:
        return [f"evict cand{k}" for k in range(self.K)]

    def render_text(self, e: int = 0) -> str:
        iv = self.state.iv[e]
        start, end = (int(x) for x in self._win[e])
        refs = max(int(iv[K.I_REF_BLOCKS]), 1)
        cands = [int(c) for c, m in zip(self._cands[e], self._mask[e]) if m]
        return (f"PrefixEviction env {e}: requests {start}..{end}, cache {int(self._cap[e])} blocks "
                f"(capacity_frac {self._frac[e]:g}), candidate set {self.config.candidate_set}"
                f"{', leaves only' if self.state.iv[e, K.I_LEAF_ONLY] else ''}\n"
                f"  block references {int(iv[K.I_REF_BLOCKS])}, hits {int(iv[K.I_HIT_BLOCKS])} "
                f"({int(iv[K.I_HIT_BLOCKS]) / refs:.3f}), evictions {int(iv[K.I_EVICTIONS])}, decisions "
                f"{int(iv[K.I_DECISIONS])}, last reward {float(self._rew[e]):.4g}\n"
                f"  candidates (block ids, LRU's victim first): {cands}")

    def _check_ttft_clock(self) -> None:
        """Every window a reset can draw (``window_order``'s, each part's), its TTFT replay stretched by
        ``ttft_load``'s time scale, within the float64 clock (``check_clock_span``, as each reset checks its own
        window) and with its distinct arrivals distinct float64 instants (``check_arrival_gaps``: the closest
        arrivals of any drawable window, scaled, at least ``MIN_GAP_S`` apart), when the env is built: a ttft_load
        too small for some windows failed only at the resets that drew one, and one so high that the scale
        underflows (1e308) replayed every arrival at 0 s. ``ValueError`` naming ttft_load and a window, and for
        too high a ttft_load the largest that works."""
        bt, cfg = self.built, self.config
        if cfg.window_order == "sequential":
            windows, starts, ends = np.arange(len(bt.starts)), bt.starts, bt.ends
        else:  # random starts: any request of a part with window_requests of the part from it
            g = np.array([0, len(bt.sc.req_prompt)]) if bt.request_groups is None else bt.request_groups
            starts = np.concatenate([np.arange(g[p], g[p + 1] - cfg.window_requests + 1) for p in range(len(g) - 1)])
            # named as reset(options={"window": w}) takes them: the index among every part's starts, part by part
            windows, ends = np.arange(len(starts)), starts + cfg.window_requests
        if bt.part_ttft_scale is None:
            scales = np.full(len(starts), bt.ttft_scale)
        else:
            scales = bt.part_ttft_scale[np.searchsorted(bt.request_groups, starts, side="right") - 1]
        check_clock_span(bt.arrival_s[ends - 1] - bt.arrival_s[starts], windows, scales,
                         np.full(len(starts), cfg.ttft_load), "PrefixEviction", "ttft_load")
        # Windows are contiguous ranges of requests: the closest arrivals any of them replays are each part's
        # smallest positive gap between consecutive requests that one drawable window holds both of.
        gap = np.diff(bt.arrival_s)
        edge = np.zeros(len(bt.arrival_s) + 1, np.int64)
        np.add.at(edge, starts, 1)
        np.add.at(edge, ends - 1, -1)  # window [s, e) holds the pairs (i, i + 1) for s <= i <= e - 2
        gap = np.where((np.cumsum(edge)[:len(gap)] > 0) & (gap > 0), gap, np.inf)
        g = np.array([0, len(bt.arrival_s)]) if bt.request_groups is None else bt.request_groups
        part_gap, part_window = np.full(len(g) - 1, np.inf), np.zeros(len(g) - 1, np.int64)
        for p in range(len(g) - 1):
            i = int(g[p] + np.argmin(gap[g[p]:g[p + 1] - 1])) if g[p + 1] - g[p] > 1 else -1
            if i >= 0 and np.isfinite(gap[i]):
                part_gap[p] = gap[i]
                part_window[p] = windows[np.searchsorted(ends, i + 2)]  # the first window holding i and i + 1
        # a part replayed as recorded (scale 1 whatever the ttft_load) keeps the trace's own instants
        per_load = bt.ttft_scale_per_load
        part_gap[np.isnan(per_load)] = np.inf
        part_scale = np.full(1, bt.ttft_scale) if bt.part_ttft_scale is None else bt.part_ttft_scale
        check_arrival_gaps(part_gap, part_scale, per_load, cfg.ttft_load, "PrefixEviction", "ttft_load", part_window)

    # --- domain metrics
    def _window_index(self, start: int) -> int:
        return int(np.searchsorted(self.built.starts, start, side="right")) - 1

    def episode_metrics(self, e: int) -> dict[str, float]:
        bt, iv = self.built, self.state.iv[e]
        start, end = (int(x) for x in self._win[e])
        refs = max(int(iv[K.I_REF_BLOCKS]), 1)
        r0, r1 = bt.sc.req_off[start], bt.sc.req_off[end]
        p = bt.part_of_request(start)
        part_start = 0 if bt.request_groups is None else int(bt.request_groups[p])
        warm = bt.sc.req_off[max(part_start, start - self.config.warmup_requests)]
        infinite = float(np.mean(bt.prev_ref[r0:r1] >= warm)) if r1 > r0 else 0.0
        hit_tok = self.state.hit_tok[e, : end - start]
        scale = bt.ttft_scale if bt.part_ttft_scale is None else float(bt.part_ttft_scale[p])
        ttft = replay_ttft(bt.engine, bt.arrival_s[start:end], bt.sc.req_prompt[start:end],
                           bt.output[start:end], hit_tok, scale)
        ok = np.isfinite(ttft)
        return {
            "block_hit_ratio": int(iv[K.I_HIT_BLOCKS]) / refs,
            "block_hits": float(iv[K.I_HIT_BLOCKS]),
            "token_hit_ratio": int(iv[K.I_HIT_TOKENS]) / max(int(iv[K.I_PROMPT_TOKENS]), 1),
            "prefill_s_saved": float(self.state.fv[e, K.F_SAVED]),
            "ttft_p50_s": percentile(ttft[ok], 50),
            "ttft_p99_s": percentile(ttft[ok], 99),
            "block_hit_ratio_infinite": infinite,
            "capacity_blocks": float(self._cap[e]),
            "capacity_frac": float(self._frac[e]),
            "requests": float(end - start),
            "failed": float(bt.failed[self._window_index(start)]),
            "rejected": float(bt.rejected[self._window_index(start)]),
            "block_refs": float(refs),
            "evictions": float(iv[K.I_EVICTIONS]),
            "decisions": float(iv[K.I_DECISIONS]),
            "stranding_evictions": float(iv[K.I_STRANDED_EVICT]),
            "bypassed_blocks": float(iv[K.I_BYPASS]),
        }


    def episode_extras(self, e: int) -> dict[str, Any]:
        bt = self.built
        if bt.request_groups is None:
            return {}
        start = int(self._win[e, 0])  # a workload mixture: which family, generator seed and window played
        return {"workload": {**bt.parts[bt.part_of_request(start)].info(), "first_request": start}}


class PrefixEvictionEnv(VecEnvView):
    """The single-env Gymnasium view (E = 1) of :class:`PrefixEvictionVecEnv`."""

    vec_class = PrefixEvictionVecEnv


class PrefixEvictionVectorEnv(NativeVectorEnv):
    """The Gymnasium ``VectorEnv`` of :class:`PrefixEvictionVecEnv` (``gymnasium.make_vec``'s vector entry point)."""

    vec_class = PrefixEvictionVecEnv
