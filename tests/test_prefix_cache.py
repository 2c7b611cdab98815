"""The core's prefix-cache index against a plain-Python LRU model (hypothesis)."""

from __future__ import annotations

import numba as nb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.core import prefix
from envs.core import state as S


@nb.njit
def _apply(stt, ops):
    """ops rows: (kind, key, depth); kind 0 = insert, 1 = find. Returns find results."""
    out = np.full(ops.shape[0], -2, np.int64)
    for t in range(ops.shape[0]):
        kind, key, depth = ops[t, 0], ops[t, 1], ops[t, 2]
        if kind == 0:
            prefix.insert(stt, 0, 0, key, depth, float(t))
        else:
            c = prefix.find(stt, 0, 0, key)
            out[t] = -1 if c < 0 else stt.pc_key[0, 0, c]
    return out


def _model(ops, capacity):
    cache: dict[int, tuple[float, int]] = {}  # key -> (last access, depth)
    out = []
    for t, (kind, key, depth) in enumerate(ops):
        if kind == 0:
            if key not in cache and len(cache) == capacity:
                victim = min(cache, key=lambda k: (cache[k][0], -cache[k][1]))
                del cache[victim]
            cache[key] = (float(t), cache.get(key, (0, depth))[1] if key in cache else depth)
            out.append(-2)
        else:
            out.append(key if key in cache else -1)
    return out, cache


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 12),
    ops=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 40), st.integers(0, 5)), min_size=1, max_size=300),
)
def test_prefix_index_matches_lru_model(capacity, ops):
    stt = S.allocate(1, 1, 1, 1, capacity)
    arr = np.array(ops, np.int64).reshape(-1, 3)
    got = _apply(stt, arr)
    want, cache = _model(ops, capacity)
    assert got.tolist() == want
    n = int(stt.pc_count[0, 0])
    assert n == len(cache) <= capacity
    assert set(stt.pc_key[0, 0, :n].tolist()) == set(cache)
    # The open-addressing index points at every live entry and nothing else.
    table = stt.pc_table[0, 0]
    assert sorted(table[table >= 0].tolist()) == list(range(n))


def test_match_length_stops_at_the_first_missing_block():
    stt = S.allocate(1, 1, 1, 1, 16)
    chain = np.array([10, 11, 12, 13], np.int64)
    for j, k in enumerate(chain[:3]):
        prefix.insert(stt, 0, 0, k, j, 0.0)
    assert prefix.match_length(stt.pc_key, stt.pc_table, 0, 0, chain, 4) == 3
    prefix.evict(stt, 0, 0, prefix.find(stt, 0, 0, 11))
    assert prefix.match_length(stt.pc_key, stt.pc_table, 0, 0, chain, 4) == 1  # 12 is stranded without 11


def test_lru_victim_two_pass_matches_the_scan():
    """The integer-minimum victim search picks the scan's entry (oldest, deepest, first), and falls
    back to the scan for -0.0, negative and infinite stamps."""
    rng = np.random.default_rng(1)
    E, R, C = 3, 2, 300
    for trial in range(300):
        last = np.floor(rng.random((E, R, C)) * rng.integers(1, 50)) * rng.choice([1.0, 0.5, 1e-3])
        if trial % 7 == 0:
            last[0, 0, rng.integers(C)] = -0.0
        if trial % 11 == 0:
            last[1, 1, rng.integers(C)] = -1.0
        if trial % 13 == 0:
            last[2, 0, :] = np.inf
        depth = rng.integers(0, 6, (E, R, C)).astype(np.int16)
        count = rng.integers(0, C + 1, (E, R)).astype(np.int32)
        for e in range(E):
            for r in range(R):
                assert prefix._lru_victim(last, depth, count, e, r) == prefix._lru_victim_scan(last, depth, count, e, r)


@nb.njit
def _insert_each(stt, e, r, chain, n, now):
    for j in range(n):
        prefix.insert(stt, e, r, chain[j], j, now)


def test_insert_chain_matches_one_insert_per_block():
    """insert_chain's one-scan victims (its candidates in ``st.pc_scratch``) give the same cache, entry for
    entry, as one ``insert`` per block: full and partly full caches, stamps and depths with ties, chains
    mixing cached and new blocks, ``now`` above, at and below the oldest stamp, and the stamps
    _lru_victim scans (-0.0, negative). Env 1, replica 1 of a 2 x 2 state: the other caches are untouched
    and only the scratch's row 1 is written."""
    rng = np.random.default_rng(7)
    C = 40
    for trial in range(400):
        a = S.allocate(2, 2, 1, 1, C)
        fill = C if trial % 4 else int(rng.integers(C // 2, C + 1))
        keys = rng.choice(200, fill, replace=False)
        for e, r in ((1, 1), (0, 1), (1, 0)):
            for j, k in enumerate(keys):
                prefix.insert(a, e, r, k, j % 6, 0.0)
        a.pc_last[1, 1, :fill] = rng.integers(0, rng.integers(1, 6), fill) * 0.5
        a.pc_depth[1, 1, :fill] = rng.integers(0, 4, fill)
        if trial % 9 == 0:
            a.pc_last[1, 1, rng.integers(fill)] = -0.0
        if trial % 10 == 0:
            a.pc_last[1, 1, rng.integers(fill)] = -1.0
        a.pc_scratch[0] = -7
        n = int(rng.integers(1, 30))
        chain = rng.choice(260, n, replace=False).astype(np.int64)
        now = [3.0, 0.0, 0.5, 100.0][trial % 4]
        b = type(a)(*[x.copy() for x in a])
        prefix.insert_chain(prefix.cache_of(a), a.pc_scratch, 1, 1, chain, n, now)
        _insert_each(b, 1, 1, chain, n, now)
        for name in ("pc_key", "pc_last", "pc_depth", "pc_count", "pc_table"):
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), (trial, name)
        assert (a.pc_scratch[0] == -7).all()
