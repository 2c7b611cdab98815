"""Prefix cache of one replica: block-chain ids -> entries, in numba.

A block is reusable only with its whole prefix: lookups walk a request's chain from its first
block and stop at the first miss. Ids are hash-chain ids (as Mooncake's ``hash_ids`` and vLLM's
block hashes, which hash the parent hash too), so equal ids already imply equal prefixes and a
set of ids is enough. Entries live in ``pc_key``/``pc_last``/``pc_depth``; ``pc_table`` is an
open-addressing index (linear probing, backward-shift deletion) so lookups cost O(1).

Default eviction is LRU with ties broken deepest-first. Every access to a chain stamps all of its
cached prefix, so an ancestor is never older than its descendants and LRU evicts leaves first,
as SGLang's radix tree does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, inline="always")
def _slot_of(key, mask):
    h = np.uint64(key) * _GOLDEN
    return np.int64(h >> np.uint64(32)) & mask


@nb.njit(cache=True, inline="always")
def _table_pos(st, e, r, key):
    """Index-table slot of ``key``: where it is, or the empty slot where it would go."""
    H = st.pc_table.shape[2]
    mask = H - 1
    h = _slot_of(key, mask)
    while True:
        c = st.pc_table[e, r, h]
        if c < 0 or st.pc_key[e, r, c] == key:
            return h
        h = (h + 1) & mask


@nb.njit(cache=True, inline="always")
def find(st, e, r, key):
    """Entry holding ``key``, or -1."""
    return st.pc_table[e, r, _table_pos(st, e, r, key)]


@nb.njit(cache=True)
def _delete_pos(st, e, r, pos):
    mask = st.pc_table.shape[2] - 1
    i = pos
    j = pos
    while True:
        j = (j + 1) & mask
        c = st.pc_table[e, r, j]
        if c < 0:
            break
        k = _slot_of(st.pc_key[e, r, c], mask)
        if i <= j:
            stays = i < k <= j
        else:
            stays = k > i or k <= j
        if not stays:
            st.pc_table[e, r, i] = c
            i = j
    st.pc_table[e, r, i] = -1


@nb.njit(cache=True)
def lru_victim(st, e, r):
    """Least recently used entry, deepest first among equals."""
    n = st.pc_count[e, r]
    best = -1
    best_t = np.inf
    best_d = -1
    for c in range(n):
        t = st.pc_last[e, r, c]
        d = st.pc_depth[e, r, c]
        if t < best_t or (t == best_t and d > best_d):
            best, best_t, best_d = c, t, d
    return best


@nb.njit(cache=True)
def evict(st, e, r, c):
    """Remove entry ``c``; the last entry moves into its place so entries stay dense."""
    _delete_pos(st, e, r, _table_pos(st, e, r, st.pc_key[e, r, c]))
    last = st.pc_count[e, r] - 1
    if c != last:
        key = st.pc_key[e, r, last]
        st.pc_table[e, r, _table_pos(st, e, r, key)] = c
        st.pc_key[e, r, c] = key
        st.pc_last[e, r, c] = st.pc_last[e, r, last]
        st.pc_depth[e, r, c] = st.pc_depth[e, r, last]
    st.pc_key[e, r, last] = -1
    st.pc_count[e, r] = last


@nb.njit(cache=True, inline="always")
def insert(st, e, r, key, depth, now):
    """Add ``key`` (evicting the LRU entry when full) or refresh it. Returns its entry."""
    c = find(st, e, r, key)
    if c >= 0:
        st.pc_last[e, r, c] = now
        return c
    if st.pc_count[e, r] == st.pc_key.shape[2]:
        evict(st, e, r, lru_victim(st, e, r))
    c = st.pc_count[e, r]
    st.pc_key[e, r, c] = key
    st.pc_last[e, r, c] = now
    st.pc_depth[e, r, c] = depth
    st.pc_table[e, r, _table_pos(st, e, r, key)] = c
    st.pc_count[e, r] = c + 1
    return c


@nb.njit(cache=True, inline="always")
def match_length(st, e, r, chain, n):
    """Number of leading blocks of ``chain[:n]`` that are cached."""
    for j in range(n):
        if find(st, e, r, chain[j]) < 0:
            return j
    return n


@nb.njit(cache=True, inline="always")
def touch(st, e, r, chain, n, now):
    """Stamp the first ``n`` (cached) blocks of a chain as used at ``now``."""
    for j in range(n):
        c = find(st, e, r, chain[j])
        if c >= 0:
            st.pc_last[e, r, c] = now


@nb.njit(cache=True)
def clear(st, e, r):
    st.pc_key[e, r, :] = -1
    st.pc_table[e, r, :] = -1
    st.pc_count[e, r] = 0
