"""PrefixEviction-v0 kernels: each fast path against the plain one it replaced (kept here as the
reference), on the states a real episode goes through, so that equality cannot silently go stale."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from envs.prefix_eviction import env as pe
from envs.prefix_eviction import kernels as K


# --- references: the code the fast paths replaced, one operation at a time
@nb.njit(cache=True)
def _rand_below_ref(iv, e, n):
    """splitmix64 step of env ``e``'s generator state (``iv[e, I_RNG]``): uniform in [0, n)."""
    z = np.uint64(iv[e, K.I_RNG]) + np.uint64(0x9E3779B97F4A7C15)
    iv[e, K.I_RNG] = np.int64(z)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z % np.uint64(n))


@nb.njit(cache=True)
def sampled_candidates_ref(st, sc, e, q, Kc, out):
    """The sampled candidate set drawn one draw at a time (before the gathered version)."""
    iv = st.iv
    leaf_only = sc.chain and iv[e, K.I_LEAF_ONLY] != 0
    n = 0
    c = iv[e, K.I_LRU_T]
    while c >= 0:
        if not (sc.chain and st.pin[e, c] == q) and not (leaf_only and st.desc[e, st.key[e, c]] > 0):
            out[0] = c
            n = 1
            break
        c = st.lru_prev[e, c]
    if n == 0:
        return 0
    cap = iv[e, K.I_CAP]
    for _ in range(4 * Kc):
        if n >= Kc:
            break
        pick = -1
        for _try in range(4):
            c = _rand_below_ref(iv, e, cap)
            if st.key[e, c] < 0 or (sc.chain and st.pin[e, c] == q):
                continue
            if leaf_only and st.desc[e, st.key[e, c]] > 0:
                continue
            pick = c
            if not sc.chain or st.desc[e, st.key[e, c]] == 0:
                break
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
    return n


def _episode_states(chain: bool, candidates: int, steps: int, seed: int, leaves: bool = True):
    """A small-window batch stepped with random legal actions: yields it at every decision."""
    vec = pe.PrefixEvictionVecEnv(3, seed=seed, chain=chain, candidates=candidates, window_requests=30,
                                  warmup_requests=30, capacity_frac=(0.01, 0.05), evict_leaves_only=leaves)
    rng = np.random.default_rng(seed)
    vec.reset()
    for _ in range(steps):
        yield vec
        m = vec.action_masks()
        vec.step(np.array([rng.choice(np.flatnonzero(r)) for r in m]))


@pytest.mark.parametrize("chain,leaves", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("candidates", [2, 16, 64])
def test_sampled_candidates_equal_the_one_draw_at_a_time_reference(chain, leaves, candidates):
    checked = 0
    for vec in _episode_states(chain, candidates, 60, seed=candidates, leaves=leaves):
        st, sc = vec.state, vec.built.sc
        for e in range(vec.num_envs):
            q = int(st.iv[e, K.I_REQ])
            if q >= st.iv[e, K.I_REQ_END]:
                continue
            for trial in range(3):  # the env's own generator state, then two others
                rng0 = int(st.iv[e, K.I_RNG]) if trial == 0 else int(np.int64(np.uint64(trial * 0x1234567891)))
                st.iv[e, K.I_RNG] = rng0
                want = np.full(candidates, -1, np.int64)
                n_want = sampled_candidates_ref(st, sc, e, q, candidates, want)
                rng_want = int(st.iv[e, K.I_RNG])
                st.iv[e, K.I_RNG] = rng0
                got = np.full(candidates, -1, np.int64)
                n_got = K._sampled_candidates(st, sc, e, q, candidates, got,
                                              np.zeros(K.scratch_size(int(st.iv[e, K.I_CAP])), np.int64))
                assert (n_got, got.tolist(), int(st.iv[e, K.I_RNG])) == (n_want, want.tolist(), rng_want)
                st.iv[e, K.I_RNG] = rng0
                checked += 1
    assert checked > 100


def test_bench_kernel_rows_equal_libcachesim_hit_for_hit():
    """The benchmark's kernel-vs-libCacheSim rows replay the same stream: flat-mode hits equal
    libCacheSim's ``process_trace`` hits for LRU, FIFO, LFU and S3-FIFO (no timing asserted)."""
    pytest.importorskip("libcachesim", reason="libcachesim not installed (pip install libcachesim)")
    from envs.prefix_eviction import bench

    out = bench.bench_against_libcachesim(1)
    assert set(out["rankings"]) == {"lru", "fifo", "lfu", "s3fifo"}
    for name, row in out["rankings"].items():
        assert row["flat_hits"] == row["libcachesim_hits"] > 0, name
        assert row["chain_refs_per_s"] > 0 and row["flat_refs_per_s"] > 0


def _slot_class_want(st, sc, e: int) -> np.ndarray:
    """Each slot's class recomputed from key, pin and desc: empty or (chain mode) pinned by the request
    being replayed, inner (a cached block below it) or leaf."""
    key = st.key[e]
    leaf = st.desc[e, np.maximum(key, 0)] == 0
    none = (key < 0) | (sc.chain & (st.pin[e] == st.iv[e, K.I_REQ]))
    return np.where(none, K.CLS_EMPTY, np.where(leaf, K.CLS_LEAF, K.CLS_INNER))


def _slot_class_got(st, e: int) -> np.ndarray:
    """``slot_class``'s 2-bit fields of env ``e`` unpacked, one per slot."""
    C = st.key.shape[1]
    c = np.arange(C)
    return ((st.slot_class[e, c >> 5] >> ((c & 31) * 2).astype(np.uint64)) & np.uint64(3)).astype(np.int64)


def _desc_want(st, sc, e: int) -> np.ndarray:
    """Cached descendants of every block id, recounted from the cached blocks' ancestor chains."""
    want = np.zeros(st.desc.shape[1], np.int64)
    for b in st.key[e][st.key[e] >= 0]:
        a = sc.parent[b]
        while a >= 0:
            want[a] += 1
            a = sc.parent[a]
    return want


@pytest.mark.parametrize("ranking,native", [(None, False), ("lfu", False), ("s3fifo", True), ("belady", True),
                                            ("fifo", False)])
@pytest.mark.parametrize("chain", [True, False])
def test_slot_class_and_desc_follow_the_cache(ranking, native, chain):
    """The packed ``slot_class`` (what the sampled draws read) equals its definition from key, pin and
    desc after every step, and desc the recount over the cached chains, whichever path inserted,
    touched, evicted or reset (decisions, native rankings' victims, bypasses, episode ends)."""
    vec = pe.PrefixEvictionVecEnv(3, seed=5, chain=chain, window_requests=30, warmup_requests=30,
                                  capacity_frac=(0.01, 0.05))
    if ranking:
        vec.set_ranking(ranking, native=native)
    rng = np.random.default_rng(1)
    vec.reset()
    ends = 0
    for _ in range(4 if native else 150):
        for e in range(vec.num_envs):
            assert (_slot_class_got(vec.state, e) == _slot_class_want(vec.state, vec.built.sc, e)).all(), e
            if chain:
                assert (vec.state.desc[e] == _desc_want(vec.state, vec.built.sc, e)).all(), e
        m = vec.action_masks()
        _, _, done, _ = vec.step(np.array([rng.choice(np.flatnonzero(r)) for r in m]))
        ends += int(done.sum())
    assert ends > 0


@nb.njit
def _numba_log1p(x):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = np.log1p(x[i])
    return out


@nb.njit
def _block_feat_one_by_one(depth, tokens, cost, cost0, block_size):
    """The three static candidate features as ``write_obs`` computed them per candidate before the table."""
    out = np.zeros((depth.shape[0], 3))
    for b in range(depth.shape[0]):
        out[b, 0] = np.log1p(depth[b]) / 6.0
        out[b, 1] = tokens[b] / block_size
        out[b, 2] = cost[b] / cost0
    return out


@pytest.mark.parametrize("kw", [{}, {"workloads": ("mooncake_conv", "agentic")}])
def test_feature_tables_equal_the_calls_they_replace(kw):
    """``Scenario.log1p_int`` is numba's ``np.log1p`` of each integer bit for bit, and ``block_feat``
    the per-candidate arithmetic it replaced, for a single trace and a mixture (one cost0 for all parts)."""
    sc = pe.PrefixEvictionVecEnv(1, seed=0, **kw).built.sc
    ints = np.arange(K.LOG1P_INTS)
    assert sc.log1p_int.tobytes() == _numba_log1p(ints).tobytes()
    want = _block_feat_one_by_one(sc.depth, sc.tokens, sc.cost, sc.cost0, pe.PrefixEvictionVecEnv(1, **kw).built.block_size)
    assert sc.block_feat[:, :3].tobytes() == np.ascontiguousarray(want).tobytes()
    assert (sc.block_feat[:, 3] == 0).all()


def test_slot_records_share_one_cache_line():
    """``allocate`` keeps each slot's hot fields in one 64-byte record (one cache line): every field a
    strided [E, C] view with its dtype and initial value, and slot (e, c)'s fields within one line."""
    E, C = 3, 37
    st = pe.allocate(E, 11, C, 5, False)
    fields = dict(pe.SLOT_I64, **{n: i for n, i, _ in pe.SLOT_I32})
    init = {n: v for n, _, v in pe.SLOT_I32}
    for name in fields:
        a = getattr(st, name)
        assert a.shape == (E, C) and a.dtype == (np.int64 if name in dict(pe.SLOT_I64) else np.int32), name
        assert (a == init.get(name, 0)).all(), name
    for e, c in [(0, 0), (1, 17), (2, C - 1)]:
        lines = {(getattr(st, n).ctypes.data + e * getattr(st, n).strides[0] + c * getattr(st, n).strides[1]) // 64
                 for n in fields}
        assert len(lines) == 1, (e, c, lines)
    st.last_t[1, 2] = 7  # views of one buffer, yet each field is its own
    assert st.last_t[1, 2] == 7 and (st.ins_t == 0).all() and (st.key == -1).all()
