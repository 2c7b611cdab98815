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
