"""Prefix cache of one replica: block-chain ids -> entries, in numba.

A block is reusable only with its whole prefix: lookups walk a request's chain from its first
block and stop at the first miss. Ids are hash-chain ids (as Mooncake's ``hash_ids`` and vLLM's
block hashes, which hash the parent hash too), so equal ids already imply equal prefixes and a
set of ids is enough. Entries live in ``pc_key``/``pc_last``/``pc_depth``; ``pc_table`` is an
open-addressing index (linear probing, backward-shift deletion) so lookups cost O(1).

Default eviction is LRU with ties broken deepest-first. Every access to a chain stamps all of its
cached prefix, so an ancestor is never older than its descendants and LRU evicts leaves first,
as SGLang's radix tree does.

The functions taking ``st`` (the whole ``ClusterState``) are the interface; the helpers they share
take only the cache's arrays (``cache_of(st)``: pc_key, pc_last, pc_depth, pc_count, pc_table).
A helper taking the state tuple, inlined or called, paid an atomic reference-count update per
member array (about 40) per call: a finished request inserting its 24 chain blocks paid thousands
(issue 16).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.core.prefetch import prefetch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, inline="always")
def cache_of(st):
    """The prefix cache's arrays of ``st``: (pc_key, pc_last, pc_depth, pc_count, pc_table)."""
    return (st.pc_key, st.pc_last, st.pc_depth, st.pc_count, st.pc_table)


@nb.njit(cache=True, inline="always")
def _slot_of(key, mask):
    h = np.uint64(key) * _GOLDEN
    return np.int64(h >> np.uint64(32)) & mask


@nb.njit(cache=True, inline="always")
def _table_pos(pc_key, pc_table, e, r, key):
    """Index-table slot of ``key``: where it is, or the empty slot where it would go."""
    H = pc_table.shape[2]
    mask = H - 1
    h = _slot_of(key, mask)
    while True:
        c = pc_table[e, r, h]
        if c < 0 or pc_key[e, r, c] == key:
            return h
        h = (h + 1) & mask


@nb.njit(cache=True, inline="always")
def _find(pc_key, pc_table, e, r, key):
    return pc_table[e, r, _table_pos(pc_key, pc_table, e, r, key)]


@nb.njit(cache=True, inline="always")
def find(st, e, r, key):
    """Entry holding ``key``, or -1."""
    return _find(st.pc_key, st.pc_table, e, r, key)


@nb.njit(cache=True, inline="always")
def prefetch_chain(pc_key, pc_last, pc_table, e, r, chain, n, entries=True):
    """Cache hints for what lookups of ``chain[:n]`` in cache (e, r) read: each key's home slot of the
    index, then (``entries``) the entry a filled home slot names (its key and stamp). A lookup walks the chain one
    block after another, each probe a load from a random slot of a table too large to stay cached
    (256 envs x 8 replicas of ~23 KB): hinted first, the loads overlap instead of stalling in turn
    (issue 16; ``envs.core.prefetch``). Changes no value."""
    mask = pc_table.shape[2] - 1
    for j in range(n):
        prefetch(pc_table, (e, r, _slot_of(chain[j], mask)))
    if not entries:
        return
    for j in range(n):
        c = pc_table[e, r, _slot_of(chain[j], mask)]
        if c >= 0:
            prefetch(pc_key, (e, r, c))
            prefetch(pc_last, (e, r, c))


@nb.njit(cache=True)
def _delete_pos(pc_key, pc_table, e, r, pos):
    mask = pc_table.shape[2] - 1
    i = pos
    j = pos
    while True:
        j = (j + 1) & mask
        c = pc_table[e, r, j]
        if c < 0:
            break
        k = _slot_of(pc_key[e, r, c], mask)
        if i <= j:
            stays = i < k <= j
        else:
            stays = k > i or k <= j
        if not stays:
            pc_table[e, r, i] = c
            i = j
    pc_table[e, r, i] = -1


_INF_BITS = np.int64(0x7FF0000000000000)  # +inf as int64 bits: larger than every finite non-negative double


@nb.njit(cache=True)
def _lru_victim(pc_last, pc_depth, pc_count, e, r):
    """The scan below in two passes where it can: non-negative doubles order as their int64 bits, so
    the oldest stamp is an integer minimum (a loop LLVM vectorizes), then the deepest entry with it,
    the first among equals. A negative stamp, -0.0 or NaN falls back to the scan."""
    n = pc_count[e, r]
    if n > 0:
        bits = pc_last[e, r, :n].view(np.int64)
        lo = bits[0]
        for c in range(1, n):
            lo = min(lo, bits[c])
        if 0 <= lo <= _INF_BITS:
            best = -1
            best_d = -1
            for c in range(n):
                if bits[c] == lo and pc_depth[e, r, c] > best_d:
                    best, best_d = c, pc_depth[e, r, c]
            return best
    return _lru_victim_scan(pc_last, pc_depth, pc_count, e, r)


@nb.njit(cache=True)
def _lru_victim_scan(pc_last, pc_depth, pc_count, e, r):
    n = pc_count[e, r]
    best = -1
    best_t = np.inf
    best_d = -1
    for c in range(n):
        t = pc_last[e, r, c]
        d = pc_depth[e, r, c]
        if t < best_t or (t == best_t and d > best_d):
            best, best_t, best_d = c, t, d
    return best


@nb.njit(cache=True)
def lru_victim(st, e, r):
    """Least recently used entry, deepest first among equals."""
    return _lru_victim(st.pc_last, st.pc_depth, st.pc_count, e, r)


@nb.njit(cache=True)
def _evict(pc, e, r, c):
    pc_key, pc_last, pc_depth, pc_count, pc_table = pc
    _delete_pos(pc_key, pc_table, e, r, _table_pos(pc_key, pc_table, e, r, pc_key[e, r, c]))
    last = pc_count[e, r] - 1
    if c != last:
        key = pc_key[e, r, last]
        pc_table[e, r, _table_pos(pc_key, pc_table, e, r, key)] = c
        pc_key[e, r, c] = key
        pc_last[e, r, c] = pc_last[e, r, last]
        pc_depth[e, r, c] = pc_depth[e, r, last]
    pc_key[e, r, last] = -1
    pc_count[e, r] = last


@nb.njit(cache=True)
def evict(st, e, r, c):
    """Remove entry ``c``; the last entry moves into its place so entries stay dense."""
    _evict(cache_of(st), e, r, c)


@nb.njit(cache=True, inline="always")
def _append(pc, e, r, key, depth, now):
    """Add ``key`` as a new entry (the cache has room); returns its entry."""
    pc_key, pc_last, pc_depth, pc_count, pc_table = pc
    c = pc_count[e, r]
    pc_key[e, r, c] = key
    pc_last[e, r, c] = now
    pc_depth[e, r, c] = depth
    pc_table[e, r, _table_pos(pc_key, pc_table, e, r, key)] = c
    pc_count[e, r] = c + 1
    return c


@nb.njit(cache=True, inline="always")
def _insert(pc, e, r, key, depth, now):
    pc_key, pc_last, pc_depth, pc_count, pc_table = pc
    c = _find(pc_key, pc_table, e, r, key)
    if c >= 0:
        pc_last[e, r, c] = now
        return c
    if pc_count[e, r] == pc_key.shape[2]:
        _evict(pc, e, r, _lru_victim(pc_last, pc_depth, pc_count, e, r))
    return _append(pc, e, r, key, depth, now)


@nb.njit(cache=True)
def insert(st, e, r, key, depth, now):
    """Add ``key`` (evicting the LRU entry when full) or refresh it. Returns its entry."""
    return _insert(cache_of(st), e, r, key, depth, now)


@nb.njit(cache=True)
def _oldest_generation(pc_last, pc_count, e, r, gen):
    """The entries holding cache (e, r)'s oldest stamp, written to ``gen[e, :m]`` (``st.pc_scratch``,
    int32 [E, >= C]). Returns (m, that stamp), or (-1, 0.0) where :func:`_lru_victim` would not take its
    two-pass path (a negative stamp, -0.0 or NaN; an empty cache)."""
    n = pc_count[e, r]
    if n == 0:
        return -1, 0.0
    bits = pc_last[e, r, :n].view(np.int64)
    lo = bits[0]
    for c in range(1, n):
        lo = min(lo, bits[c])
    if not 0 <= lo <= _INF_BITS:
        return -1, 0.0
    m = 0
    for c in range(n):
        if bits[c] == lo:
            gen[e, m] = c
            m += 1
    return m, pc_last[e, r, gen[e, 0]]


@nb.njit(cache=True)
def insert_chain(pc, gen, e, r, chain, n, now):
    """``insert`` of ``chain[j]`` at depth j for each j < ``n``, in order, all at ``now`` (a finished
    request's prompt blocks). ``pc``: ``cache_of(st)``; ``chain``: int64 [>= n] block ids; ``now``: s;
    ``gen``: ``st.pc_scratch`` (int32 [E, C], scratch: row ``e`` is overwritten, nothing is allocated,
    so that kernels compiled without reference counting can call it).

    The same entries, evictions and moves as ``n`` calls of ``insert``, with the LRU victims of one call
    found from one scan: the entries holding the oldest stamp (``_oldest_generation``) stay the oldest
    while any of them is cached, as long as that stamp is older than ``now`` (every stamp this call
    writes is ``now``), so each victim is the deepest of them, the lowest entry index among equals
    (``_lru_victim``'s order), with the index of the one that ``_evict`` moves into a victim's place
    followed. Where the stamp is not older than ``now`` or not plain (``_oldest_generation``), each
    victim comes from ``_lru_victim`` as in ``insert``. A finished request's chain of ~24 new blocks
    in a full cache of 815 entries scanned the cache once per eviction (issue 16)."""
    pc_key, pc_last, pc_depth, pc_count, pc_table = pc
    C = pc_key.shape[2]
    prefetch_chain(pc_key, pc_last, pc_table, e, r, chain, n)
    m = 0  # members of the oldest generation left in gen[e, :m]; -1: not tracked (_lru_victim per eviction)
    lo_t = 0.0
    for j in range(n):
        key = chain[j]
        c = _find(pc_key, pc_table, e, r, key)
        if c >= 0:
            if m > 0 and pc_last[e, r, c] == lo_t:  # a member refreshed: no longer the oldest
                for k in range(m):
                    if gen[e, k] == c:
                        m -= 1
                        gen[e, k] = gen[e, m]
                        break
            pc_last[e, r, c] = now
            continue
        if pc_count[e, r] == C:
            if m == 0:
                m, lo_t = _oldest_generation(pc_last, pc_count, e, r, gen)
                if m > 0 and not lo_t < now:
                    m = -1
                for k in range(m):  # the victims' index slots, hinted at once (_evict finds each)
                    prefetch(pc_table, (e, r, _slot_of(pc_key[e, r, gen[e, k]], pc_table.shape[2] - 1)))
            if m > 0:
                k_best = 0
                for k in range(1, m):
                    a = gen[e, k]
                    b = gen[e, k_best]
                    if pc_depth[e, r, a] > pc_depth[e, r, b] or (pc_depth[e, r, a] == pc_depth[e, r, b] and a < b):
                        k_best = k
                v = gen[e, k_best]
                m -= 1
                gen[e, k_best] = gen[e, m]
                last = pc_count[e, r] - 1
                if v != last and pc_last[e, r, last] == lo_t:  # _evict moves a member into v's place
                    for k in range(m):
                        if gen[e, k] == last:
                            gen[e, k] = v
                            break
                _evict(pc, e, r, v)
            else:
                _evict(pc, e, r, _lru_victim(pc_last, pc_depth, pc_count, e, r))
        _append(pc, e, r, key, j, now)


@nb.njit(cache=True, inline="always")
def match_length(pc_key, pc_table, e, r, chain, n):
    """Number of leading blocks of ``chain[:n]`` that are cached (``st.pc_key``, ``st.pc_table``)."""
    for j in range(n):
        if _find(pc_key, pc_table, e, r, chain[j]) < 0:
            return j
    return n


@nb.njit(cache=True)
def touch(pc_key, pc_last, pc_table, e, r, chain, n, now):
    """Stamp the first ``n`` (cached) blocks of a chain as used at ``now`` (``st.pc_key``,
    ``st.pc_last``, ``st.pc_table``)."""
    for j in range(n):
        c = _find(pc_key, pc_table, e, r, chain[j])
        if c >= 0:
            pc_last[e, r, c] = now


@nb.njit(cache=True)
def clear(st, e, r):
    st.pc_key[e, r, :] = -1
    st.pc_table[e, r, :] = -1
    st.pc_count[e, r] = 0
