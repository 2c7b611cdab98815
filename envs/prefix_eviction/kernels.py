"""Numba kernels of PrefixEviction-v0: a batch of E prefix caches replaying block references.

One call advances every env of the batch until the next insertion needs room and at least two
legal candidates exist (a decision), or its episode window ends. A forced choice (one legal
candidate) is taken inside the kernel; with none (every cached block belongs to the request
being inserted) the block is not cached (bypass).

Layout (struct-of-arrays, leading dimension E): cache entries are slots ``[E, C]`` taken from a
free stack, so a slot never moves; block ids are dense per scenario (``0..U-1``), so the index
from block to slot is a direct array ``where[E, U]`` (no hashing needed). A slot's hot fields share one
64-byte record (``env.SLOT_I64``/``SLOT_I32``), and its class (empty or pinned / inner / leaf: ``CLS_*``)
is kept in 2 bits for the sampled candidates' draws (``State.slot_class``). Three orders are kept
per env: the recency list (LRU), the insertion list (FIFO, or S3-FIFO's small/main queues) and,
for the priority rankings (LFU, GDSF, Belady), an indexed binary min-heap over slots with a
lexicographic key ``(k1, k2)``.

Semantics. ``chain=True``: a request hits its longest cached prefix (lookup stops at the first
missing block, as vLLM's ``find_longest_cache_hit`` and SGLang's ``match_prefix``); then every
block of its chain is referenced in order: cached ones are touched, missing ones are inserted.
The request's own blocks are pinned until it ends (an engine cannot free the KV of the request it
is computing). When the request ends its chain is stamped as used, tail first, so ancestors are
more recent than descendants (vLLM V1 frees a request's blocks in reverse order so that tail
blocks are evicted first: ``vllm/v1/core/single_type_kv_cache_manager.py``). Evicting an inner
block strands its cached descendants: they stay resident, cannot hit, and become usable again if
a later request re-inserts the missing prefix (ids are hash chains, so the ids match again).
``chain=False``: every reference is an independent object (hit iff cached), recency is stamped
per reference and nothing is pinned: a textbook cache simulator over the flattened reference
string.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

from envs.core.engine import step_time
from envs.core.fastmod import fastmod, fastmod_magic
from envs.core.prefetch import prefetch

# Every kernel here is compiled without numba's reference counting (``_nrt=False``, numba's
# CPU target option ``nrt``): they only index arrays their caller owns and allocate none, and
# with counting on, each read of a ``State``/``Scenario`` field in a loop paid an atomic
# incref/decref pair, which was most of the time of a cache reference (issue 16). A kernel that
# allocated an array would fail to compile, not run unsafely.
JIT = {"cache": True, "_nrt": False}

# Rankings: the order in which the K candidates are listed (the first one is the ranking's own
# victim). The learned agent always sees R_LRU (the K oldest, or with ``iv[e, I_SAMPLED]`` LRU's
# victim then random blocks); the others serve the heuristics natively.
R_LRU, R_LRU_LEAF, R_FIFO, R_LFU, R_GDSF, R_BELADY, R_S3FIFO = 0, 1, 2, 3, 4, 5, 6
NEVER = np.int64(1) << np.int64(60)  # next use of a block never referenced again

# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "GLOBAL_FEATURES then CANDIDATE_FEATURES with 'reinserted' (7b85bc4), as its zoo checkpoint (9d33153)"
        ' was trained on'
    ),
}
OBS_VERSION = 1
GLOBAL_FEATURES = (
    "fill",  # cached blocks / capacity
    "req_capacity",  # log1p(chain length of the request / capacity blocks)
    "req_hit",  # cached prefix of the request being inserted / its chain length
    "req_len",  # log1p(chain length of the request) / 6
    "position",  # log1p(depth of the block to insert) / 6
    "candidates",  # legal candidates / K
    "hit_recent",  # EMA of the per-request block hit ratio
    "progress",  # share of the episode's requests done
)
CANDIDATE_FEATURES = (
    "present",  # 1 if the k-th candidate exists (and is evictable)
    "age",  # log1p((now - last use) / C), references as the clock
    "refs",  # log1p(references since it was inserted)
    "irt",  # log1p(gap between its last two references / C); 0 if referenced once
    "insert_age",  # log1p((now - insertion) / C)
    "depth",  # log1p(position in its chain) / 6
    "descendants",  # log1p(cached blocks below it in the prefix tree) / 6 (chain mode)
    "stranded",  # 1 if its parent is not cached (it cannot hit until that is re-inserted)
    "tokens",  # tokens in the block / block size
    "cost",  # prefill seconds its loss would cost at its position / a first block's
    "tenant",  # tenant of its last request / number of tenants (0 if the trace has none)
    "lru_victim",  # 1 for the least recently used evictable block (LRU's own victim)
    # log1p(times this block id was evicted since the episode's warm-up began): a block evicted and
    # requested again is reused (S3-FIFO's ghost hit, Yang et al. SOSP'23, admits it to its main queue).
    "reinserted",
)
N_GLOBAL = len(GLOBAL_FEATURES)
N_CAND = len(CANDIDATE_FEATURES)

# Per-env integer scalars (columns of ``iv``) and float scalars (columns of ``fv``).
I_REQ, I_REQ_END, I_J, I_HITLEN, I_CAP, I_CNT, I_FREE_TOP, I_HSIZE = 0, 1, 2, 3, 4, 5, 6, 7
I_LRU_H, I_LRU_T, I_Q_H, I_Q_T, I_M_H, I_M_T, I_G_H, I_G_T = 8, 9, 10, 11, 12, 13, 14, 15
I_S_SIZE, I_M_SIZE, I_G_SIZE, I_REQ_START, I_SCORE = 16, 17, 18, 19, 20
I_HIT_BLOCKS, I_REF_BLOCKS, I_HIT_TOKENS, I_PROMPT_TOKENS = 21, 22, 23, 24
I_EVICTIONS, I_DECISIONS, I_BYPASS, I_STRANDED_EVICT, I_GHOST_HIT, I_RNG, I_SAMPLED = 25, 26, 27, 28, 29, 30, 31
I_S3_EVICTED = 32  # S3-FIFO: the cache has evicted once (libCacheSim's has_evicted)
I_LEAF_ONLY = 33  # chain mode: a deciding policy's candidates are leaves of the cached prefix tree only
N_IV = 34

# S3-FIFO's parameters, libCacheSim S3FIFO.c defaults: small-size-ratio=0.10, ghost-size-ratio=0.90,
# move-to-main-threshold=2.
S3_SMALL_RATIO = 0.1
S3_GHOST_RATIO = 0.9
S3_MOVE_TO_MAIN = 2
F_L, F_SAVED, F_HIT_EMA, F_REWARD, N_FV = 0, 1, 2, 3, 4


# ----------------------------------------------------------------------------- linked lists
# Doubly linked lists over slots; ``iv[e, h]`` is the newest end, ``iv[e, t]`` the oldest.
@nb.njit(inline="always", **JIT)
def _push_front(prv, nxt, iv, e, h, t, c):
    head = iv[e, h]
    prv[e, c] = -1
    nxt[e, c] = head
    if head >= 0:
        prv[e, head] = c
    else:
        iv[e, t] = c
    iv[e, h] = c


@nb.njit(inline="always", **JIT)
def _unlink(prv, nxt, iv, e, h, t, c):
    p = prv[e, c]
    n = nxt[e, c]
    if p >= 0:
        nxt[e, p] = n
    else:
        iv[e, h] = n
    if n >= 0:
        prv[e, n] = p
    else:
        iv[e, t] = p
    prv[e, c] = -1
    nxt[e, c] = -1


# ----------------------------------------------------------------------------- min-heap
@nb.njit(inline="always", **JIT)
def _less(k1, k2, e, a, b):
    return k1[e, a] < k1[e, b] or (k1[e, a] == k1[e, b] and k2[e, a] < k2[e, b])


@nb.njit(**JIT)
def _sift_up(heap, hpos, k1, k2, e, i):
    c = heap[e, i]
    while i > 0:
        p = (i - 1) >> 1
        pc = heap[e, p]
        if not _less(k1, k2, e, c, pc):
            break
        heap[e, i] = pc
        hpos[e, pc] = i
        i = p
    heap[e, i] = c
    hpos[e, c] = i


@nb.njit(**JIT)
def _sift_down(heap, hpos, k1, k2, e, i, n):
    c = heap[e, i]
    while True:
        l = 2 * i + 1
        if l >= n:
            break
        m = l
        if l + 1 < n and _less(k1, k2, e, heap[e, l + 1], heap[e, l]):
            m = l + 1
        if not _less(k1, k2, e, heap[e, m], c):
            break
        heap[e, i] = heap[e, m]
        hpos[e, heap[e, i]] = i
        i = m
    heap[e, i] = c
    hpos[e, c] = i


@nb.njit(**JIT)
def _heap_fix(heap, hpos, k1, k2, iv, e, c):
    i = hpos[e, c]
    _sift_up(heap, hpos, k1, k2, e, i)
    _sift_down(heap, hpos, k1, k2, e, hpos[e, c], iv[e, I_HSIZE])


@nb.njit(**JIT)
def _heap_push(heap, hpos, k1, k2, iv, e, c):
    n = iv[e, I_HSIZE]
    heap[e, n] = c
    hpos[e, c] = n
    iv[e, I_HSIZE] = n + 1
    _sift_up(heap, hpos, k1, k2, e, n)


@nb.njit(**JIT)
def _heap_remove(heap, hpos, k1, k2, iv, e, c):
    i = hpos[e, c]
    n = iv[e, I_HSIZE] - 1
    iv[e, I_HSIZE] = n
    hpos[e, c] = -1
    if i == n:
        return
    last = heap[e, n]
    heap[e, i] = last
    hpos[e, last] = i
    _sift_up(heap, hpos, k1, k2, e, i)
    _sift_down(heap, hpos, k1, k2, e, hpos[e, last], n)


# ----------------------------------------------------------------------------- cost model
@nb.njit(**JIT)
def prefill_saved_s(coeffs, prompt, hit_tokens):
    """Prefill seconds a cached prefix of ``hit_tokens`` saves a ``prompt``-token request: one
    prefill iteration of the whole prompt minus one of the uncached rest attending to the cached
    prefix (hwmodels' step-time model; at least one token is computed, as vLLM does)."""
    h = min(hit_tokens, prompt - 1)
    if h <= 0:
        return 0.0
    p = float(prompt)
    rest = float(prompt - h)
    full = step_time(coeffs, p, p * (p + 1.0) / 2.0, 0.0, 0.0)
    part = step_time(coeffs, rest, rest * (h + (rest + 1.0) / 2.0), 0.0, 0.0)
    return full - part


# ----------------------------------------------------------------------------- the cache
@nb.njit(**JIT)
def _keys(rank, k1, k2, e, c, freq, last_t, next_use, cost, L):
    """Heap key of slot ``c`` under a priority ranking (smallest = evicted first)."""
    if rank == R_LFU:  # least frequently used, least recently used among equals
        k1[e, c] = float(freq)
        k2[e, c] = last_t
    elif rank == R_GDSF:  # Cherkasova 1998: H = L + freq * cost / size (size: one block)
        k1[e, c] = L + freq * cost
        k2[e, c] = last_t
    else:  # Belady MIN: farthest next use first; never-used-again ones least recently used first
        k1[e, c] = -float(next_use)
        k2[e, c] = last_t


# Slot classes (``State.slot_class``, 2 bits a slot, 32 slots to a uint64 word): what a sampled draw
# needs to know of the slot it lands on, without reading the slot's pin and block (``pin`` and
# ``desc[key]`` were two cache misses per draw; the packed words of an env fit in ~26 cache lines at
# 6,496 slots). CLS_EMPTY: no candidate (an empty slot, or in chain mode a block pinned by the request
# being replayed: set when the request references it, lifted by ``_end_request``); CLS_INNER / CLS_LEAF:
# an unpinned block with / without a cached block below it (desc > 0 / == 0; always CLS_LEAF in flat mode).
CLS_EMPTY, CLS_INNER, CLS_LEAF = 0, 1, 2


@nb.njit(inline="always", **JIT)
def _slot_cls(bits, e, c):
    return np.int64((bits[e, c >> 5] >> np.uint64((c & 31) << 1)) & np.uint64(3))


@nb.njit(inline="always", **JIT)
def _set_slot_cls(bits, e, c, cls):
    sh = np.uint64((c & 31) << 1)
    w = c >> 5
    bits[e, w] = (bits[e, w] & ~(np.uint64(3) << sh)) | (np.uint64(cls) << sh)


@nb.njit(**JIT)
def _desc_add(st, parent, e, b, d):
    """Add ``d`` (+1 or -1) to the cached-descendant count of every ancestor of block ``b``; a
    cached ancestor whose count leaves or reaches 0 changes class (``slot_class``: inner / leaf)."""
    desc, where = st.desc, st.where
    a = parent[b]
    while a >= 0:
        v = desc[e, a]
        desc[e, a] = v + d
        if v == 0 or v + d == 0:  # became an inner block, or a leaf again
            c = where[e, a]
            if c >= 0 and _slot_cls(st.slot_class, e, c) != CLS_EMPTY:  # (a pinned one keeps CLS_EMPTY)
                _set_slot_cls(st.slot_class, e, c, CLS_LEAF if v + d == 0 else CLS_INNER)
        a = parent[a]


@nb.njit(**JIT)
def evict_slot(st, sc, rank, e, c):
    """Remove slot ``c`` from every structure and return it to the free stack."""
    iv = st.iv
    b = st.key[e, c]
    if sc.chain and st.desc[e, b] > 0:
        iv[e, I_STRANDED_EVICT] += 1
    st.where[e, b] = -1
    st.key[e, c] = -1
    _set_slot_cls(st.slot_class, e, c, CLS_EMPTY)
    st.n_evict[e, b] += 1
    _unlink(st.lru_prev, st.lru_next, iv, e, I_LRU_H, I_LRU_T, c)
    if rank == R_S3FIFO:
        if st.s3q[e, c] == 0:
            _unlink(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)
            iv[e, I_S_SIZE] -= 1
        else:
            _unlink(st.q_prev, st.q_next, iv, e, I_M_H, I_M_T, c)
            iv[e, I_M_SIZE] -= 1
    else:
        _unlink(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)
    if rank == R_LFU or rank == R_GDSF or rank == R_BELADY:
        if rank == R_GDSF:
            st.fv[e, F_L] = st.k1[e, c]  # inflation: L = H of the evicted block
        _heap_remove(st.heap, st.hpos, st.k1, st.k2, iv, e, c)
    if sc.chain:
        _desc_add(st, sc.parent, e, b, -1)
    st.free[e, iv[e, I_FREE_TOP]] = c
    iv[e, I_FREE_TOP] += 1
    iv[e, I_CNT] -= 1
    iv[e, I_EVICTIONS] += 1


@nb.njit(inline="always", **JIT)
def s3_small_cap(cap):
    """Small-queue size: libCacheSim's (int64_t)cache_size * 0.1, at least 1 (libCacheSim admits
    nothing to a small queue of one object: its insert refuses obj_size >= small size)."""
    return max(np.int64(cap * S3_SMALL_RATIO), 1)


@nb.njit(**JIT)
def _ghost_push(st, e, b, cap):
    """S3-FIFO ghost queue: a FIFO of evicted ids holding (int64_t)(cache_size * 0.9) of them; an id
    already in it keeps its place (libCacheSim's ghost is a FIFO cache: a hit does not move it)."""
    iv = st.iv
    if st.g_in[e, b]:
        return
    st.g_in[e, b] = True
    _push_front(st.g_prev, st.g_next, iv, e, I_G_H, I_G_T, b)
    iv[e, I_G_SIZE] += 1
    while iv[e, I_G_SIZE] > np.int64(cap * S3_GHOST_RATIO):
        old = iv[e, I_G_T]
        _unlink(st.g_prev, st.g_next, iv, e, I_G_H, I_G_T, old)
        st.g_in[e, old] = False
        iv[e, I_G_SIZE] -= 1


@nb.njit(**JIT)
def _s3_evict_main(st, sc, e, q):
    """libCacheSim ``S3FIFO_evict_main``: 2-bit CLOCK over M; returns the slot or -1 when every
    block of M is pinned by request ``q`` (chain mode)."""
    iv = st.iv
    pinned = 0  # consecutive pinned blocks passed over
    while iv[e, I_M_SIZE] > 0 and pinned < iv[e, I_M_SIZE]:
        c = iv[e, I_M_T]
        _unlink(st.q_prev, st.q_next, iv, e, I_M_H, I_M_T, c)
        _push_front(st.q_prev, st.q_next, iv, e, I_M_H, I_M_T, c)  # kept, reinserted, or unlinked by evict_slot
        if sc.chain and st.pin[e, c] == q:
            pinned += 1
            continue
        pinned = 0
        f = st.s3f[e, c]
        if f >= 1:
            st.s3f[e, c] = min(f, 3) - 1
            continue
        return c
    return -1


@nb.njit(**JIT)
def _s3_evict_small(st, sc, e, q, cap):
    """libCacheSim ``S3FIFO_evict_small``: from S's tail, a block with >= ``S3_MOVE_TO_MAIN``
    accesses moves to M (the loop goes on in S), the first one with fewer goes to the ghost and is
    the victim; returns -1 when S empties by promotions or every block left in S is pinned."""
    iv = st.iv
    pinned = 0
    while iv[e, I_S_SIZE] > 0 and pinned < iv[e, I_S_SIZE]:
        c = iv[e, I_Q_T]
        _unlink(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)
        if sc.chain and st.pin[e, c] == q:
            _push_front(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)
            pinned += 1
            continue
        pinned = 0
        if st.s3f[e, c] >= S3_MOVE_TO_MAIN:
            iv[e, I_S_SIZE] -= 1
            iv[e, I_M_SIZE] += 1
            st.s3q[e, c] = 1
            st.s3f[e, c] = 0  # libCacheSim inserts a new object into M: counter 0
            _push_front(st.q_prev, st.q_next, iv, e, I_M_H, I_M_T, c)
            continue
        _push_front(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)  # evict_slot unlinks it
        _ghost_push(st, e, st.key[e, c], cap)
        return c
    return -1


@nb.njit(**JIT)
def s3fifo_victim(st, sc, e, q):
    """S3-FIFO's eviction as libCacheSim implements it (``libCacheSim/cache/eviction/S3FIFO.c``,
    https://github.com/1a1a11a/libCacheSim, the version libcachesim 0.3.5 runs; Yang et al.,
    "FIFO queues are all you need for cache eviction", SOSP'23): small queue S of
    (int64)(0.1 x capacity) blocks, main queue M of the rest, ghost G of (int64)(0.9 x capacity) ids.
    Evict from M when M is over its size or S is empty (2-bit CLOCK: a block accessed since it
    entered M or was last passed is reinserted with its counter decremented), else from S: blocks
    accessed at least twice (move-to-main-threshold 2) move to M and the scan of S goes on; the
    first with fewer goes to G and is the victim; when S empties by promotions, M evicts. Until the
    first eviction a new block finds S full it enters M (libCacheSim's ``has_evicted``).

    Chain mode: blocks pinned by request ``q`` are passed over (rotated to the head of their queue);
    when every block of the queue the rule picks is pinned, the other queue evicts instead, so a
    request never bypasses the cache while an unpinned block exists. Returns the slot to evict, or
    -1 when every cached block is pinned."""
    iv = st.iv
    cap = iv[e, I_CAP]
    iv[e, I_S3_EVICTED] = 1
    if iv[e, I_M_SIZE] > cap - s3_small_cap(cap) or iv[e, I_S_SIZE] == 0:
        c = _s3_evict_main(st, sc, e, q)
        if c < 0:
            c = _s3_evict_small(st, sc, e, q, cap)
        return c
    c = _s3_evict_small(st, sc, e, q, cap)
    if c < 0:  # S emptied by promotions, or all of it pinned
        c = _s3_evict_main(st, sc, e, q)
    return c


@nb.njit(**JIT)
def _insert(st, sc, rank, e, b, r, q):
    """Cache block ``b`` (referenced by reference ``r`` of request ``q``) in a free slot."""
    iv = st.iv
    top = iv[e, I_FREE_TOP] - 1
    c = st.free[e, top]
    iv[e, I_FREE_TOP] = top
    iv[e, I_CNT] += 1
    st.where[e, b] = c
    st.key[e, c] = b
    st.ins_t[e, c] = r
    st.last_t[e, c] = r
    st.prev_t[e, c] = -1
    st.freq[e, c] = 1
    st.next_use[e, c] = sc.next_ref[r]
    st.pin[e, c] = q
    # pinned by request q (chain mode) until it ends; flat mode: no cached block is ever below another
    _set_slot_cls(st.slot_class, e, c, CLS_EMPTY if sc.chain else CLS_LEAF)
    st.tenant[e, c] = sc.req_tenant[q]
    _push_front(st.lru_prev, st.lru_next, iv, e, I_LRU_H, I_LRU_T, c)
    if rank == R_S3FIFO:
        st.s3f[e, c] = 0
        # Found in the ghost before the eviction, or S full before the cache ever evicted: into M.
        if iv[e, I_GHOST_HIT] or (iv[e, I_S3_EVICTED] == 0 and iv[e, I_S_SIZE] >= s3_small_cap(iv[e, I_CAP])):
            iv[e, I_GHOST_HIT] = 0
            st.s3q[e, c] = 1
            iv[e, I_M_SIZE] += 1
            _push_front(st.q_prev, st.q_next, iv, e, I_M_H, I_M_T, c)
        else:
            st.s3q[e, c] = 0
            iv[e, I_S_SIZE] += 1
            _push_front(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)
    else:
        _push_front(st.q_prev, st.q_next, iv, e, I_Q_H, I_Q_T, c)
    if rank == R_LFU or rank == R_GDSF or rank == R_BELADY:
        _keys(rank, st.k1, st.k2, e, c, 1, r, sc.next_ref[r], sc.cost[b], st.fv[e, F_L])
        _heap_push(st.heap, st.hpos, st.k1, st.k2, iv, e, c)
    if sc.chain:
        _desc_add(st, sc.parent, e, b, 1)


@nb.njit(**JIT)
def _touch(st, sc, rank, e, c, r, q):
    """Reference ``r`` (of request ``q``) to the cached slot ``c``."""
    st.prev_t[e, c] = st.last_t[e, c]
    st.last_t[e, c] = r
    st.freq[e, c] += 1
    st.next_use[e, c] = sc.next_ref[r]
    st.pin[e, c] = q
    if sc.chain:
        _set_slot_cls(st.slot_class, e, c, CLS_EMPTY)  # pinned by request q until it ends
    st.tenant[e, c] = sc.req_tenant[q]
    if rank == R_S3FIFO:
        st.s3f[e, c] = min(st.s3f[e, c] + 1, 3)  # a 2-bit counter
    if not sc.chain:
        _unlink(st.lru_prev, st.lru_next, st.iv, e, I_LRU_H, I_LRU_T, c)
        _push_front(st.lru_prev, st.lru_next, st.iv, e, I_LRU_H, I_LRU_T, c)
    if rank == R_LFU or rank == R_GDSF or rank == R_BELADY:
        _keys(rank, st.k1, st.k2, e, c, st.freq[e, c], r, st.next_use[e, c], sc.cost[st.key[e, c]],
              st.fv[e, F_L])
        _heap_fix(st.heap, st.hpos, st.k1, st.k2, st.iv, e, c)


@nb.njit(**JIT)
def _end_request(st, sc, rank, e, q):
    """Chain mode: stamp the request's cached chain as used, tail first (ancestors newest), and lift
    its pins (each block's slot class becomes inner or leaf again)."""
    r0 = sc.req_off[q]
    n = sc.req_off[q + 1] - r0
    for j in range(n - 1, -1, -1):
        b = sc.ref_block[r0 + j]
        c = st.where[e, b]
        if c < 0:
            continue
        _set_slot_cls(st.slot_class, e, c, CLS_LEAF if st.desc[e, b] == 0 else CLS_INNER)
        t = r0 + n - 1 - j
        st.last_t[e, c] = t
        _unlink(st.lru_prev, st.lru_next, st.iv, e, I_LRU_H, I_LRU_T, c)
        _push_front(st.lru_prev, st.lru_next, st.iv, e, I_LRU_H, I_LRU_T, c)
        if rank == R_LFU or rank == R_GDSF or rank == R_BELADY:  # the recency tie-break of each key
            st.k2[e, c] = t
            _heap_fix(st.heap, st.hpos, st.k1, st.k2, st.iv, e, c)


@nb.njit(**JIT)
def _evictable(st, sc, e, c, q):
    return not (sc.chain and st.pin[e, c] == q)


SAMPLE_BLOCK = 64  # random draws gathered at a time by _sampled_candidates
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment


def scratch_size(max_cap: int) -> int:
    """Length of the int64 ``scratch`` the kernels take: the heap walk's frontier (``max_cap + 2``)
    or the sampled candidates' gather buffers (4 x ``SAMPLE_BLOCK``), whichever is longer."""
    return max(int(max_cap) + 2, 4 * SAMPLE_BLOCK)


@nb.njit(inline="always", **JIT)
def _splitmix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(inline="always", **JIT)
def _prefetch_slot(st, e, c):
    """Hint the record of slot ``c`` (``env.SLOT_I64``/``SLOT_I32``: one cache line holds every field
    ``write_obs``, ``evict_slot`` and ``_insert`` read of it; ``envs.core.prefetch``; changes no value)."""
    prefetch(st.key, (e, c))


@nb.njit(**JIT)
def _sampled_candidates(st, sc, e, q, K, out, scratch):
    """LRU's victim, then up to K - 1 distinct evictable blocks drawn uniformly from the cache
    (LRB's sampled candidates, Song et al. NSDI'20; Redis's approximated LRU samples the same
    way), each draw retried a few times to find a leaf of the prefix tree in chain mode (evicting
    an inner block strands its descendants; SGLang's radix tree evicts leaves only).

    With ``iv[e, I_LEAF_ONLY]`` (chain mode) only leaves are candidates: the first is the least
    recently used evictable leaf (SGLang's own victim) and a draw that lands on an inner block is
    discarded like a pinned one, so the others are distinct leaves drawn uniformly among the
    evictable leaves (rejection sampling; fewer than K - 1 when the 4 x K draws of up to 4 tries
    find fewer, which the action mask shows). A candidate set is never emptied by the
    constraint: an evictable block always has an evictable leaf in its subtree (the env's
    ``evict_leaves_only`` docstring).

    Draw i is splitmix64 of ``iv[e, I_RNG] + (i + 1) * GOLDEN`` modulo the capacity, and the state
    advances by the draws used. The draws are computed ``SAMPLE_BLOCK`` at a time and their slots'
    key, pin and leaf flag gathered in loops without data-dependent branches (so the cache misses
    overlap), then consumed in order by the same rule as one draw at a time (tests keep that
    reference, ``tests/test_prefix_eviction_kernels.py``). ``scratch``: int64, at least
    4 x ``SAMPLE_BLOCK`` long (``scratch_size``)."""
    iv = st.iv
    chain = sc.chain
    leaf_only = chain and iv[e, I_LEAF_ONLY] != 0
    bits = st.slot_class
    n = 0
    c = iv[e, I_LRU_T]
    while c >= 0:
        cls = _slot_cls(bits, e, c)  # CLS_EMPTY: pinned by request q
        if cls != CLS_EMPTY and not (leaf_only and cls == CLS_INNER):
            out[0] = c
            n = 1
            _prefetch_slot(st, e, c)
            break
        c = st.lru_prev[e, c]
    if n == 0:
        return 0
    cap = np.uint64(iv[e, I_CAP])  # occupied slots are 0..cap-1 (the free stack hands out the lowest first)
    m_lo, m_hi = fastmod_magic(cap)  # cap < 2**31 (slots are int32)
    B = SAMPLE_BLOCK
    z = np.uint64(iv[e, I_RNG])
    used = 0  # draws consumed
    have = 0  # draws gathered (the buffer holds draws have - B .. have - 1)
    m2 = np.uint64(0)  # bit j: draw have - B + j is an evictable leaf (flag 2 of the one-draw rule)
    m1 = np.uint64(0)  # bit j: an evictable inner block that may be picked (flag 1; never with leaf_only)
    ONE = np.uint64(1)
    it = 0  # groups of up to 4 tries consumed (at most 4 K)
    while it < 4 * K and n < K:
        bit = used - (have - B)
        pick = -1
        if used < have and bit + 4 <= B:
            # The group lies in the gathered block: read it from the bit masks. Groups with no flagged
            # draw pick nothing and take 4 draws each: skip them together.
            rest = (m2 | m1) >> np.uint64(bit)
            skip = (B - bit) // 4 if rest == 0 else np.int64(trailing_zeros(rest)) // 4
            if skip > 0:
                skip = min(skip, 4 * K - it)
                it += skip
                used += 4 * skip
                continue
            w2 = (m2 >> np.uint64(bit)) & np.uint64(15)
            if w2 != 0:  # the first leaf of the group ends it
                j = np.int64(trailing_zeros(w2))
                used += j + 1
            else:  # no leaf in 4 tries: the last inner block tried
                j = 63 - np.int64(leading_zeros((m1 >> np.uint64(bit)) & np.uint64(15)))
                used += 4
            pick = scratch[bit + j]
        else:
            # A group that starts a block or crosses into the next: one draw at a time, gathering the
            # next B draws when the buffer runs out (their slots' words read in one loop, so the cache
            # misses overlap).
            for _try in range(4):
                if used == have:
                    m2 = np.uint64(0)
                    m1 = np.uint64(0)
                    for j in range(B):
                        z += GOLDEN
                        scratch[j] = np.int64(fastmod(_splitmix(z), m_lo, m_hi, cap))  # == _splitmix(z) % cap
                    for j in range(B):
                        scratch[B + j] = _slot_cls(bits, e, scratch[j])
                    for j in range(B):
                        cls = scratch[B + j]
                        if cls == CLS_EMPTY or (leaf_only and cls == CLS_INNER):
                            continue
                        if cls == CLS_LEAF:
                            m2 |= ONE << np.uint64(j)
                        else:
                            m1 |= ONE << np.uint64(j)
                    have += B
                j = used - (have - B)
                used += 1
                if (m2 >> np.uint64(j)) & ONE:
                    pick = scratch[j]
                    break
                if (m1 >> np.uint64(j)) & ONE:
                    pick = scratch[j]
        it += 1
        if pick < 0:
            continue
        dup = False
        for i in range(n):
            if out[i] == pick:
                dup = True
                break
        if not dup:
            out[n] = pick
            n += 1
            _prefetch_slot(st, e, pick)  # write_obs reads these rows next
    iv[e, I_RNG] = np.int64(np.uint64(iv[e, I_RNG]) + np.uint64(used) * GOLDEN)
    return n


@nb.njit(**JIT)
def candidates(st, sc, rank, e, q, K, out, scratch):
    """The K first evictable slots in the order of ``rank``; returns how many were found.
    ``R_LRU`` with ``iv[e, I_LEAF_ONLY]`` (chain mode) lists evictable leaves only (``R_LRU_LEAF``'s
    order); the other rankings are heuristics the kernel runs natively, each with its own rule."""
    n = 0
    if rank == R_LRU and st.iv[e, I_SAMPLED]:
        return _sampled_candidates(st, sc, e, q, K, out, scratch)
    if rank == R_LRU or rank == R_LRU_LEAF:
        leaves = rank == R_LRU_LEAF or (sc.chain and st.iv[e, I_LEAF_ONLY] != 0)
        c = st.iv[e, I_LRU_T]
        while c >= 0 and n < K:
            if _evictable(st, sc, e, c, q) and not (leaves and st.desc[e, st.key[e, c]] > 0):
                out[n] = c
                n += 1
            c = st.lru_prev[e, c]
    elif rank == R_FIFO:
        c = st.iv[e, I_Q_T]
        while c >= 0 and n < K:
            if _evictable(st, sc, e, c, q):
                out[n] = c
                n += 1
            c = st.q_prev[e, c]
    elif rank == R_S3FIFO:
        c = s3fifo_victim(st, sc, e, q)
        if c >= 0:
            out[0] = c
            n = 1
    else:
        # Best-first walk of the heap: the frontier holds heap positions whose parents were taken.
        hs = st.iv[e, I_HSIZE]
        m = 0
        if hs > 0:
            scratch[0] = 0
            m = 1
        while m > 0 and n < K:
            best = 0
            for i in range(1, m):
                if _less(st.k1, st.k2, e, st.heap[e, scratch[i]], st.heap[e, scratch[best]]):
                    best = i
            pos = scratch[best]
            m -= 1
            scratch[best] = scratch[m]
            c = st.heap[e, pos]
            if _evictable(st, sc, e, c, q):
                out[n] = c
                n += 1
            for ch in (2 * pos + 1, 2 * pos + 2):
                if ch < hs:
                    scratch[m] = ch
                    m += 1
    return n


LOG1P_INTS = 4096  # log1p of the integers below this come from Scenario.log1p_int (a table of libm's values)


def log1p_table(n: int = LOG1P_INTS) -> np.ndarray:
    """float64 [n]: ``log1p(i)`` for i = 0 .. n - 1, each from libm's ``log1p`` (``math.log1p``, the
    function the kernels' ``np.log1p`` calls), so a lookup equals the call bit for bit."""
    return np.array([math.log1p(i) for i in range(n)], np.float64)


@nb.njit(inline="always", **JIT)
def _log1p_int(table, i):
    """``np.log1p(i)`` for an integer ``i`` >= 0, looked up below the table's length."""
    return table[i] if i < table.shape[0] else np.log1p(i)


@nb.njit(**JIT)
def write_obs(st, sc, rank, e, K, n, cands, obs, mask, block_size, n_tenants):
    """Observation and mask of env ``e``'s decision among ``cands[:n]`` (``GLOBAL_FEATURES``, then
    ``CANDIDATE_FEATURES`` of each candidate). The candidates' slot rows, then their blocks' rows,
    are hinted (``envs.core.prefetch``) before any is read, so their cache misses overlap."""
    iv = st.iv
    if not (rank == R_LRU and iv[e, I_SAMPLED]):  # the sampled candidates hinted theirs as they were drawn
        for k in range(n):
            _prefetch_slot(st, e, cands[k])
    for k in range(n):
        b = st.key[e, cands[k]]
        prefetch(st.desc, (e, b))
        prefetch(st.n_evict, (e, b))
        prefetch(sc.block_feat, (b, 0))
        prefetch(sc.parent, (b,))
    if sc.chain:
        for k in range(n):
            p = sc.parent[st.key[e, cands[k]]]
            if p >= 0:
                prefetch(st.where, (e, p))
    q = iv[e, I_REQ]
    r0 = sc.req_off[q]
    clen = sc.req_off[q + 1] - r0
    cap = iv[e, I_CAP]
    now = r0 + iv[e, I_J]
    o = obs[e]
    lt = sc.log1p_int
    o[0] = iv[e, I_CNT] / cap
    o[1] = np.log1p(clen / cap)
    o[2] = iv[e, I_HITLEN] / max(clen, 1)
    o[3] = _log1p_int(lt, clen) / 6.0
    o[4] = _log1p_int(lt, iv[e, I_J]) / 6.0
    o[5] = n / K
    o[6] = st.fv[e, F_HIT_EMA]
    o[7] = (q - iv[e, I_REQ_START]) / max(iv[e, I_REQ_END] - iv[e, I_REQ_START], 1)
    inv_c = 1.0 / cap
    for k in range(K):
        base = N_GLOBAL + k * N_CAND
        mask[e, k] = k < n
        if k >= n:
            for f in range(N_CAND):
                o[base + f] = 0.0
            continue
        c = cands[k]
        b = st.key[e, c]
        o[base + 0] = 1.0
        o[base + 1] = np.log1p((now - st.last_t[e, c]) * inv_c)
        o[base + 2] = _log1p_int(lt, st.freq[e, c])
        pt = st.prev_t[e, c]
        o[base + 3] = np.log1p((st.last_t[e, c] - pt) * inv_c) if pt >= 0 else 0.0
        o[base + 4] = np.log1p((now - st.ins_t[e, c]) * inv_c)
        o[base + 5] = sc.block_feat[b, 0]
        o[base + 6] = _log1p_int(lt, st.desc[e, b]) / 6.0
        p = sc.parent[b]
        o[base + 7] = 1.0 if (sc.chain and p >= 0 and st.where[e, p] < 0) else 0.0
        o[base + 8] = sc.block_feat[b, 1]
        o[base + 9] = sc.block_feat[b, 2]
        o[base + 10] = (st.tenant[e, c] + 1.0) / n_tenants if n_tenants > 0 else 0.0
        o[base + 11] = 1.0 if k == 0 and rank == R_LRU else 0.0
        o[base + 12] = _log1p_int(lt, st.n_evict[e, b])


@nb.njit(**JIT)
def advance(st, sc, rank, e, K, decide, obs, mask, cands, scratch, block_size, n_tenants):
    """Run env ``e`` until a decision (returns True, candidates in ``cands``, obs written) or the
    end of its window (returns False). ``decide=False`` takes each ranking's first candidate
    (warm-up replay). Rewards and counters accumulate in ``st.fv``/``st.iv``."""
    iv = st.iv
    chain = sc.chain
    score = iv[e, I_SCORE] != 0
    while iv[e, I_REQ] < iv[e, I_REQ_END]:
        q = iv[e, I_REQ]
        r0 = sc.req_off[q]
        n = sc.req_off[q + 1] - r0
        if iv[e, I_J] < 0:  # start of a request: prefix lookup
            h = 0
            if chain:
                while h < n and st.where[e, sc.ref_block[r0 + h]] >= 0:
                    h += 1
                tok = 0
                for j in range(h):
                    tok += sc.ref_tokens[r0 + j]
                if score:
                    saved = prefill_saved_s(sc.coeffs, sc.req_prompt[q], tok)
                    iv[e, I_HIT_BLOCKS] += h
                    iv[e, I_HIT_TOKENS] += tok
                    st.hit_tok[e, q - iv[e, I_REQ_START]] = tok
                    st.fv[e, F_SAVED] += saved
                    st.fv[e, F_REWARD] += saved
            iv[e, I_HITLEN] = h
            if score:
                iv[e, I_REF_BLOCKS] += n
                iv[e, I_PROMPT_TOKENS] += sc.req_prompt[q]
            iv[e, I_J] = 0
        while iv[e, I_J] < n:
            j = iv[e, I_J]
            r = r0 + j
            b = sc.ref_block[r]
            c = st.where[e, b]
            if c >= 0:
                if not chain:
                    iv[e, I_HITLEN] += 1
                if not chain and score:
                    iv[e, I_HIT_BLOCKS] += 1
                    iv[e, I_HIT_TOKENS] += sc.ref_tokens[r]
                    st.hit_tok[e, q - iv[e, I_REQ_START]] += sc.ref_tokens[r]
                    st.fv[e, F_SAVED] += sc.cost[b]
                    st.fv[e, F_REWARD] += sc.cost[b]
                _touch(st, sc, rank, e, c, r, q)
                iv[e, I_J] = j + 1
                continue
            if rank == R_S3FIFO and st.g_in[e, b]:  # the ghost is looked up before evicting
                _unlink(st.g_prev, st.g_next, iv, e, I_G_H, I_G_T, b)
                st.g_in[e, b] = False
                iv[e, I_G_SIZE] -= 1
                iv[e, I_GHOST_HIT] = 1
            if iv[e, I_CNT] >= iv[e, I_CAP]:
                m = candidates(st, sc, rank, e, q, K if decide else 1, cands, scratch)
                if m == 0:
                    iv[e, I_GHOST_HIT] = 0
                    if score:
                        iv[e, I_BYPASS] += 1
                    iv[e, I_J] = j + 1
                    continue
                if m >= 2 and decide:
                    if score:
                        iv[e, I_DECISIONS] += 1
                    write_obs(st, sc, rank, e, K, m, cands, obs, mask, block_size, n_tenants)
                    return True
                evict_slot(st, sc, rank, e, cands[0])
            _insert(st, sc, rank, e, b, r, q)
            iv[e, I_J] = j + 1
        if chain:
            _end_request(st, sc, rank, e, q)
        if n > 0:
            st.fv[e, F_HIT_EMA] += 0.05 * (iv[e, I_HITLEN] / n - st.fv[e, F_HIT_EMA])
        iv[e, I_REQ] = q + 1
        iv[e, I_J] = -1
    return False


@nb.njit(**JIT)
def reset_env(st, sc, rank, e, cap, warm_start, start, end, K, decide, obs, mask, cands, scratch,
              block_size, n_tenants):
    """Empty env ``e``'s cache, replay requests [warm_start, start) unscored with the ranking's
    own victims, and run to the first decision of the window [start, end) (with ``decide``
    False: through the whole window, each victim the ranking's first candidate)."""
    iv = st.iv
    rng, sampled, leaf = iv[e, I_RNG], iv[e, I_SAMPLED], iv[e, I_LEAF_ONLY]  # set by the caller
    for i in range(N_IV):
        iv[e, i] = 0
    iv[e, I_RNG], iv[e, I_SAMPLED], iv[e, I_LEAF_ONLY] = rng, sampled, leaf
    for i in range(N_FV):
        st.fv[e, i] = 0.0
    for col in (I_LRU_H, I_LRU_T, I_Q_H, I_Q_T, I_M_H, I_M_T, I_G_H, I_G_T):
        iv[e, col] = -1
    C = st.key.shape[1]
    for c in range(C):
        b = st.key[e, c]
        if b >= 0:
            st.where[e, b] = -1
        st.key[e, c] = -1
        st.free[e, c] = C - 1 - c
        st.lru_prev[e, c] = -1
        st.lru_next[e, c] = -1
        st.q_prev[e, c] = -1
        st.q_next[e, c] = -1
        st.hpos[e, c] = -1
        st.pin[e, c] = -1
    st.slot_class[e, :] = 0
    if sc.chain:
        st.desc[e, :] = 0
    st.n_evict[e, :] = 0
    if rank == R_S3FIFO:
        st.g_in[e, :] = False
    iv[e, I_FREE_TOP] = C
    iv[e, I_CAP] = cap
    iv[e, I_REQ] = warm_start
    iv[e, I_REQ_END] = start
    iv[e, I_J] = -1
    advance(st, sc, rank, e, K, False, obs, mask, cands, scratch, block_size, n_tenants)
    for i in (I_HIT_BLOCKS, I_REF_BLOCKS, I_HIT_TOKENS, I_PROMPT_TOKENS, I_EVICTIONS, I_DECISIONS,
              I_BYPASS, I_STRANDED_EVICT):
        iv[e, i] = 0
    st.fv[e, F_SAVED] = 0.0
    st.fv[e, F_REWARD] = 0.0
    st.hit_tok[e, :] = 0
    iv[e, I_REQ_START] = start
    iv[e, I_REQ_END] = end
    iv[e, I_SCORE] = 1
    return advance(st, sc, rank, e, K, decide, obs, mask, cands, scratch, block_size, n_tenants)


@nb.njit(**JIT)
def step_all(st, sc, rank, envs, actions, K, obs, mask, cands, scratch, reward, done, block_size,
             n_tenants):
    """Each env of ``envs`` evicts its chosen candidate (an index into its candidates), inserts
    the pending block and runs to its next decision; ``done[e]`` when its window ended."""
    W = st.slot_class.shape[1]
    for i in range(envs.shape[0]):
        e = envs[i]
        if i + 1 < envs.shape[0]:  # the next env's slot classes, which its sampled draws read (a hint only)
            for w in range(0, W, 8):
                prefetch(st.slot_class, (envs[i + 1], w))
        st.fv[e, F_REWARD] = 0.0
        evict_slot(st, sc, rank, e, cands[e, actions[e]])
        q = st.iv[e, I_REQ]
        r = sc.req_off[q] + st.iv[e, I_J]
        _insert(st, sc, rank, e, sc.ref_block[r], r, q)
        st.iv[e, I_J] += 1
        more = advance(st, sc, rank, e, K, True, obs, mask, cands[e], scratch, block_size, n_tenants)
        reward[e] = st.fv[e, F_REWARD]
        done[e] = not more
