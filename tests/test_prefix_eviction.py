"""PrefixEviction-v0: every heuristic against a plain-Python simulator of its textbook definition,
textbook examples, chain semantics on hand-built traces, the Gymnasium/SB3 checkers, batching."""

from __future__ import annotations

import re

from collections import OrderedDict

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
import traces
from agents.policy import make_policy
from envs.prefix_eviction import env as pe
from traces.trace import Trace, TraceMeta

BS = 512


def chain_trace(chains: list[list[int]], tokens: list[int] | None = None) -> Trace:
    """One request per chain, 1 s apart; full blocks unless ``tokens`` says otherwise."""
    n = len(chains)
    lens = np.array([len(c) for c in chains])
    prompt = np.array(tokens) if tokens is not None else lens * BS
    return Trace(np.arange(n, dtype=np.float64), prompt.astype(np.int64), np.full(n, 50, np.int64),
                 TraceMeta("hand", "tests", "n/a"), block_ids=np.concatenate(chains).astype(np.int64),
                 block_offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), block_size=BS)


def refs_trace(refs: list[int]) -> Trace:
    """A reference string: one single-block request per reference."""
    return chain_trace([[r] for r in refs])


def run(trace: Trace, policy: str, capacity: int, chain: bool = False, actions=None, **kw) -> dict:
    """One whole-trace episode (no warm-up) under ``policy``, or with decisions exposed (LRU
    candidates) and ``actions(vec)`` choosing; ``kw``: more config fields."""
    U = len(np.unique(trace.block_ids))
    vec = pe.PrefixEvictionVecEnv(1, seed=0, trace=trace, split="all", window_requests=len(trace),
                                  warmup_requests=0, capacity_frac=capacity / U, chain=chain, **kw)
    assert vec.caps == (capacity,)
    pol = make_policy(policy, vec, pe.ENV_ID) if actions is None else None
    obs = vec.reset()
    for _ in range(10**6):
        a = pol.act(obs, vec.action_masks()) if actions is None else np.array([actions(vec)])
        obs, _, done, infos = vec.step(np.asarray(a))
        if done[0]:
            return infos[0]["metrics"]
    raise AssertionError("episode did not end")


# --- plain-Python reference simulators (textbook definitions), hits over a reference string
def ref_lru(refs, C):
    c, hits = OrderedDict(), 0
    for x in refs:
        if x in c:
            hits += 1
            c.move_to_end(x)
            continue
        if len(c) >= C:
            c.popitem(last=False)
        c[x] = None
    return hits


def ref_fifo(refs, C):
    c, hits = OrderedDict(), 0
    for x in refs:
        if x in c:
            hits += 1
            continue
        if len(c) >= C:
            c.popitem(last=False)
        c[x] = None
    return hits


def ref_priority(refs, C, key, on_evict=lambda v: None):
    """Evict the cached block with the smallest key(block, state) (LFU, GDSF)."""
    freq, last, hits, cached = {}, {}, 0, set()
    for t, x in enumerate(refs):
        if x in cached:
            hits += 1
            freq[x] += 1
        else:
            if len(cached) >= C:
                v = min(cached, key=lambda b: key(b, freq, last))
                on_evict(key(v, freq, last))
                cached.remove(v)
            cached.add(x)
            freq[x] = 1
        last[x] = t
    return hits


def ref_lfu(refs, C):
    return ref_priority(refs, C, lambda b, f, l: (f[b], l[b]))


def ref_gdsf(refs, C, cost):
    L = [0.0]
    H = {}

    def key(b, f, l):
        return (H[b], l[b])

    freq, last, hits, cached = {}, {}, 0, set()
    for t, x in enumerate(refs):
        if x in cached:
            hits += 1
            freq[x] += 1
        else:
            if len(cached) >= C:
                v = min(cached, key=lambda b: key(b, freq, last))
                L[0] = H[v]
                cached.remove(v)
            cached.add(x)
            freq[x] = 1
        H[x] = L[0] + freq[x] * cost[x]
        last[x] = t
    return hits


def ref_belady(refs, C):
    nxt, seen = [0] * len(refs), {}
    for t in range(len(refs) - 1, -1, -1):
        nxt[t] = seen.get(refs[t], 10**18)
        seen[refs[t]] = t
    cached, hits = {}, 0
    for t, x in enumerate(refs):
        if x in cached:
            hits += 1
        elif len(cached) >= C:
            del cached[max(cached, key=cached.get)]
        cached[x] = nxt[t]
    return hits


def ref_s3fifo(refs, C):
    """libCacheSim S3FIFO.c (the version libcachesim 0.3.5 runs): small FIFO of int(0.1 C), main
    FIFO of the rest with a 2-bit CLOCK, ghost FIFO of int(0.9 C) ids; a block accessed twice in
    the small queue moves to main when it reaches the tail (the scan of the small queue goes on);
    until the first eviction a block that finds the small queue full enters main. Small queues of
    one block admit (libCacheSim refuses them; servegym keeps one slot)."""
    small_cap = max(int(C * 0.1), 1)
    S, M, G, hits = OrderedDict(), OrderedDict(), OrderedDict(), 0
    evicted = False

    def evict():
        if len(M) > C - small_cap or not S:
            while M:
                k, f = M.popitem(last=False)
                if f >= 1:
                    M[k] = min(f, 3) - 1
                else:
                    return
            return
        while S:
            k, f = S.popitem(last=False)
            if f >= 2:
                M[k] = 0
                continue
            if k not in G:
                G[k] = None
                while len(G) > int(C * 0.9):
                    G.popitem(last=False)
            return

    for x in refs:
        if x in S or x in M:
            q = S if x in S else M
            q[x] = min(q[x] + 1, 3)
            hits += 1
            continue
        ghost = G.pop(x, 0) is None
        while len(S) + len(M) >= C:
            evicted = True
            evict()
        (M if ghost or (not evicted and len(S) >= small_cap) else S)[x] = 0
    return hits


# Silberschatz, Operating System Concepts, ch. 9: 20 references, 3 frames.
CLASSIC = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1]


def test_textbook_examples():
    tr = refs_trace(CLASSIC)
    assert run(tr, "fifo", 3)["block_hits"] == 20 - 15  # 15 page faults
    assert run(tr, "lru", 3)["block_hits"] == 20 - 12  # 12 page faults
    assert run(tr, "belady", 3)["block_hits"] == 20 - 9  # OPT: 9 page faults
    anomaly = refs_trace([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5])  # Belady's anomaly under FIFO
    assert run(anomaly, "fifo", 3)["block_hits"] == 12 - 9
    assert run(anomaly, "fifo", 4)["block_hits"] == 12 - 10


@pytest.mark.parametrize("seed", range(4))
def test_heuristics_match_reference_simulators(seed):
    rng = np.random.default_rng(seed)
    n_obj = int(rng.integers(8, 40))
    weights = rng.pareto(1.0, n_obj) + 0.1
    refs = rng.choice(n_obj, size=400, p=weights / weights.sum()).tolist()
    U = len(set(refs))
    tr = refs_trace(refs)
    dense = {b: i for i, b in enumerate(sorted(set(refs)))}
    for C in sorted({2, max(2, U // 4), max(2, U // 2), U - 1}):
        cost = pe.build(pe.PrefixEvictionConfig(trace=tr, split="all", window_requests=len(tr),
                                                warmup_requests=0, chain=False)).sc.cost
        want = {"lru": ref_lru(refs, C), "fifo": ref_fifo(refs, C), "lfu": ref_lfu(refs, C),
                "belady": ref_belady(refs, C), "s3fifo": ref_s3fifo(refs, C),
                "gdsf": ref_gdsf(refs, C, {b: cost[dense[b]] for b in dense}),
                "lru_leaf": ref_lru(refs, C)}  # no chains: every block is a leaf
        got = {p: run(tr, p, C)["block_hits"] for p in want}
        assert got == want, (C, got, want)
        assert max(got.values()) == want["belady"]


def test_chain_semantics_stranding_and_leaf_first():
    # Cache of 3; X = [a, b, c] fills it; Y = [d] needs room; X comes back.
    tr = chain_trace([[1, 2, 3], [4], [1, 2, 3]])
    lru = run(tr, "lru", 3, chain=True)
    assert lru["block_hits"] == 2 and lru["stranding_evictions"] == 0  # evicts c: a, b still hit

    def evict_root(vec):  # the candidate whose depth feature is 0 (block a)
        obs = vec._obs[0]
        depth = obs[pe.K.N_GLOBAL + pe.K.CANDIDATE_FEATURES.index("depth")::pe.K.N_CAND][: vec.K]
        legal = vec.action_masks()[0]
        return int(np.flatnonzero(legal & (depth == 0))[0])

    m = run(tr, "lru", 3, chain=True, actions=evict_root, evict_leaves_only=False)
    # a evicted: b, c stay cached but stranded, so X's lookup stops at once; re-inserting a
    # makes them usable again.
    assert m["block_hits"] == 0 and m["stranding_evictions"] == 1
    tr2 = chain_trace([[1, 2, 3], [4], [1, 2, 3], [1, 2, 3]])
    m2 = run(tr2, "lru", 3, chain=True, actions=evict_root, evict_leaves_only=False)
    # X's second lookup misses (a evicted); re-inserting a (the root policy now evicts d) makes
    # the stranded b, c usable again, so X's third pass hits all 3.
    assert m2["block_hits"] == 3 and m2["stranding_evictions"] == 1


def _conv_trace(duration_s=240.0, seed=1):
    return traces.load_trace("mooncake_conv", seed=seed, duration_s=duration_s)


def test_chain_mode_orders_on_a_conversation_trace():
    tr = _conv_trace()
    U = len(np.unique(tr.block_ids))
    for frac in (0.05, 0.2):
        C = max(2, round(frac * U))
        hits = {p: run(tr, p, C, chain=True)["block_hits"]
                for p in ("lru", "lru_leaf", "lfu", "fifo", "s3fifo", "gdsf", "belady")}
        # vLLM's tail-first LRU only ever evicts leaves in a sequential replay, so it picks the
        # same victims as SGLang's leaf-only LRU.
        assert hits["lru"] == hits["lru_leaf"]
        assert hits["belady"] == max(hits.values()) and hits["belady"] > hits["lru"]
        stats = traces.trace_stats(tr)
        m = run(tr, "lru", C, chain=True)
        assert m["block_hit_ratio_infinite"] == pytest.approx(stats["infinite_cache_block_hit_ratio"])
        assert m["block_hit_ratio"] < m["block_hit_ratio_infinite"]


def test_checkers_and_registration():
    kw = {"trace": _conv_trace(120.0), "window_requests": 100, "warmup_requests": 50, "capacity_frac": 0.05}
    # The checkers step unmasked random actions; with leaves only, fewer than K candidates is
    # common, so they check the layout with the constraint off (masked rollouts with it on:
    # test_vecenv_matches_gymnasium_copies_and_is_deterministic).
    gym_check_env(pe.PrefixEvictionEnv(**kw, evict_leaves_only=False), skip_render_check=True)
    sb3_check_env(pe.PrefixEvictionEnv(**kw, evict_leaves_only=False), warn=True)
    vec = envs.make_vec(pe.ENV_ID, 2, seed=0, **kw)
    assert vec.sweep() == ("capacity_frac", (0.05,))


def _masked_random(rng, mask):
    keys = rng.random(mask.shape)
    keys[~mask] = -1
    return keys.argmax(-1)


def test_vecenv_matches_gymnasium_copies_and_is_deterministic():
    kw = {"trace": _conv_trace(120.0), "window_requests": 80, "warmup_requests": 40,
          "capacity_frac": (0.02, 0.1)}
    E, seed = 3, 5

    def rollout():
        vec = pe.PrefixEvictionVecEnv(E, seed=seed, **kw)
        singles = [pe.PrefixEvictionEnv(**kw) for _ in range(E)]
        obs = vec.reset()
        np.testing.assert_array_equal(obs, np.stack([s.reset(seed=seed + i)[0] for i, s in enumerate(singles)]))
        rng = np.random.default_rng(0)
        alive = np.ones(E, bool)
        trail = []
        for _ in range(5000):
            a = _masked_random(rng, vec.action_masks())
            obs, rew, done, infos = vec.step(a)
            trail.append(rew.copy())
            for i, s in enumerate(singles):
                if alive[i]:
                    o, r, term, _, info = s.step(int(a[i]))
                    assert r == pytest.approx(rew[i], abs=0) and term == done[i]
                    if term:
                        alive[i] = False
                        assert info["metrics"] == infos[i]["metrics"]
                    else:
                        np.testing.assert_array_equal(o, obs[i])
            if not alive.any():
                return np.concatenate(trail)
        raise AssertionError("episodes should end")

    np.testing.assert_array_equal(rollout(), rollout())


def test_a_capacity_under_two_blocks_is_refused_not_raised_to_two():
    """capacity_frac=1e-308 (or any capacity rounding under 2 blocks) played a cache of 2 blocks, the same episodes
    as every such capacity_frac; now one ValueError naming capacity_frac, its value, the trace's distinct blocks and
    the block count, with the least capacity_frac that works."""
    tr = refs_trace([1, 2, 3, 1, 2, 4, 1, 5, 2, 3] * 20)  # 5 distinct blocks
    kw = {"trace": tr, "split": "all", "window_requests": 40, "warmup_requests": 0}
    for frac, cap, raw in ((1e-308, 0, "5e-308"), (0.2, 1, "1"), (0.29, 1, "1.45")):
        with pytest.raises(ValueError, match=rf"^PrefixEviction: capacity_frac={frac!r} x the 5 distinct blocks of "
                                             rf"trace '.*' is {cap} blocks? \(round\({re.escape(raw)}\)\), under "
                                             r"the 2 an eviction chooses between; capacity_frac must be at least 0.3 "
                                             r"here$"):
            pe.PrefixEvictionVecEnv(1, **kw, capacity_frac=frac)
        # one capacity of a sweep is enough
        with pytest.raises(ValueError, match=rf"capacity_frac={frac!r} x the 5 distinct blocks"):
            pe.PrefixEvictionVecEnv(1, **kw, capacity_frac=(0.6, frac))
    assert pe.PrefixEvictionVecEnv(1, **kw, capacity_frac=0.3).caps == (2,)  # round(1.5): the least that works
    assert pe.PrefixEvictionVecEnv(1, **kw, capacity_frac=(0.4, 1.0)).caps == (2, 5)
    with pytest.raises(ValueError, match=r"x the 1 distinct blocks .* no capacity_frac in \(0, 1\] reaches it"):
        pe.PrefixEvictionVecEnv(1, trace=refs_trace([7] * 10), split="all", window_requests=5, warmup_requests=0,
                                capacity_frac=1.0)


def test_bad_inputs():
    tr = _conv_trace(120.0)
    with pytest.raises(ValueError, match="capacity_frac"):
        pe.PrefixEvictionVecEnv(1, trace=tr, capacity_frac=0.0)
    with pytest.raises(ValueError, match="split"):
        pe.PrefixEvictionVecEnv(1, trace=tr, split="dev")
    with pytest.raises(ValueError, match="no prefix block ids"):
        pe.PrefixEvictionVecEnv(1, trace="azure_conv")
    with pytest.raises(ValueError, match="fewer than one window"):
        pe.PrefixEvictionVecEnv(1, trace=tr, window_requests=10**6)
    with pytest.raises(ValueError, match="not prefix-hash chains"):
        pe.PrefixEvictionVecEnv(1, trace=chain_trace([[1, 2], [3, 2]]), split="all", window_requests=2)
    vec = pe.PrefixEvictionVecEnv(1, seed=0, trace=tr, window_requests=100, capacity_frac=0.02)
    vec.reset()
    with pytest.raises(ValueError, match="actions must be integers"):
        vec.step(np.array([vec.K]))
    with pytest.raises(ValueError, match="ranking must be one of"):
        vec.set_ranking("arc")
    with pytest.raises(ValueError, match="candidate_set must be one of"):
        pe.PrefixEvictionVecEnv(1, trace=tr, candidate_set="random")
    with pytest.raises(TypeError):
        pe.PrefixEvictionVecEnv(1, trace=tr, not_a_field=1)
    # a negative horizon made every legal candidate a good victim, as 0 does (was taken)
    with pytest.raises(ValueError, match=r"^PrefixEviction: teacher_horizon must be a number >= 0 .*got -1.0$"):
        pe.PrefixEvictionVecEnv(1, trace=tr, teacher_horizon=-1.0)
    # teacher_clip was refused only when teacher_values ran (an imitation run's first labels), not when built
    for clip in (-1.0, 0.0):
        with pytest.raises(ValueError, match=r"^PrefixEviction: teacher_clip must be a number > 0 .*got "):
            pe.PrefixEvictionVecEnv(1, trace=tr, teacher_clip=clip)


def _lru_order(vec, e=0):
    """Slots of env ``e`` from least to most recently used (walks the kernel's recency list)."""
    st, out = vec.state, []
    c = int(st.iv[e, pe.K.I_LRU_T])
    while c >= 0:
        out.append(c)
        c = int(st.lru_prev[e, c])
    return out


def test_sampled_candidates_lru_victim_first_distinct_evictable_mostly_leaves():
    kw = {"trace": _conv_trace(240.0), "window_requests": 150, "warmup_requests": 100, "capacity_frac": 0.05}
    vec = pe.PrefixEvictionVecEnv(2, seed=3, **kw)
    assert vec.config.candidate_set == "sampled"
    vec.reset()
    F, G = pe.K.N_CAND, pe.K.N_GLOBAL
    f_lru, f_desc = pe.K.CANDIDATE_FEATURES.index("lru_victim"), pe.K.CANDIDATE_FEATURES.index("descendants")
    rng = np.random.default_rng(0)
    leaves_sampled = leaves_cache = n_sampled = n_cache = decisions = 0
    for _ in range(400):
        for e in range(2):
            mask, cands, obs = vec._mask[e], vec._cands[e], vec._obs[e]
            n = int(mask.sum())
            assert n >= 2 and mask[:n].all() and not mask[n:].any()
            cs = cands[:n]
            assert len(set(cs.tolist())) == n  # distinct
            q = int(vec.state.iv[e, pe.K.I_REQ])
            assert not np.any(vec.state.pin[e, cs] == q)  # none pinned by the request inserting
            pinned = vec.state.pin[e] == q
            first = next(c for c in _lru_order(vec, e) if not pinned[c])
            assert cs[0] == first  # LRU's own victim
            lru_flag = obs[G + f_lru::F][: vec.K]
            assert lru_flag[0] == 1.0 and not lru_flag[1:].any()
            desc = obs[G + f_desc::F][: vec.K]
            leaves_sampled += int(np.sum(desc[1:n] == 0))
            n_sampled += n - 1
            blocks = vec.state.key[e][vec.state.key[e] >= 0]
            leaves_cache += int(np.sum(vec.state.desc[e, blocks] == 0))
            n_cache += len(blocks)
            decisions += 1
        vec.step(_masked_random(rng, vec.action_masks()))
    # Each draw retries to find a leaf, so leaves are over-represented among sampled candidates.
    assert decisions == 800 and leaves_sampled / n_sampled > leaves_cache / n_cache + 0.1


@pytest.mark.parametrize("leaves", [False, True])
def test_lru_candidate_set_is_the_k_oldest(leaves):
    kw = {"trace": _conv_trace(240.0), "window_requests": 150, "warmup_requests": 100,
          "capacity_frac": 0.05, "candidate_set": "lru", "evict_leaves_only": leaves}
    vec = pe.PrefixEvictionVecEnv(1, seed=3, **kw)
    vec.reset()
    for _ in range(50):
        q = int(vec.state.iv[0, pe.K.I_REQ])
        st = vec.state
        oldest = [c for c in _lru_order(vec)
                  if st.pin[0, c] != q and not (leaves and st.desc[0, st.key[0, c]] > 0)][: vec.K]
        n = int(vec._mask[0].sum())
        assert vec._cands[0, :n].tolist() == oldest[:n]
        vec.step(np.zeros(1, np.int64))


def test_teacher_is_belady_among_candidates():
    tr = _conv_trace(240.0)
    kw = {"trace": tr, "window_requests": 150, "warmup_requests": 100, "capacity_frac": 0.05}
    vec = pe.PrefixEvictionVecEnv(1, seed=1, **kw)
    vec.reset()
    sc = vec.built.sc
    for _ in range(100):
        st = vec.state
        now = int(sc.req_off[st.iv[0, pe.K.I_REQ]] + st.iv[0, pe.K.I_J])
        n = int(vec._mask[0].sum())
        blocks = st.key[0, vec._cands[0, :n]]
        # Next use from the reference string itself (not the state's next_use field).
        later = [np.flatnonzero(sc.ref_block[now:] == b) for b in blocks]
        dist = np.array([x[0] if len(x) else np.inf for x in later])
        a = int(vec.teacher_actions()[0])
        assert dist[a] == dist.max()
        good = vec.teacher_targets(horizon=2.0)[0]
        assert good[a] and not good[n:].any()
        np.testing.assert_array_equal(good[:n] | (np.arange(n) == a), (dist > 2.0 * vec._cap[0]) | (np.arange(n) == a))
        vec.step(np.array([a]))


def test_belady_among_candidates_beats_lru_on_a_conversation_trace():
    tr = _conv_trace(240.0)
    U = len(np.unique(tr.block_ids))
    C = round(0.05 * U)
    lru = run(tr, "lru", C, chain=True)
    teacher = run(tr, "belady_candidates", C, chain=True)  # follows vec.teacher_actions()
    belady = run(tr, "belady", C, chain=True)
    assert lru["block_hits"] < teacher["block_hits"] <= belady["block_hits"]


@pytest.mark.slow  # ~2 min on a loaded 2-core machine (the zoo agent decides every eviction)
def test_zoo_beats_lru_at_small_capacities_on_held_out_mooncake(shared_traces):
    """The reference agent against LRU on the three held-out windows of the real Mooncake
    conversation trace (0.050 vs 0.045 at 1%, 0.085 vs 0.067 at 5% when it was trained, issue 21:
    leaf candidates, training distribution; agents.evaluate seed 10000)."""
    kw = {"trace": str(shared_traces / "mooncake_conversation.jsonl"), "split": "test",
          "window_order": "sequential"}
    for frac in (0.01, 0.05):
        got = {}
        for name in ("zoo", "lru"):
            vec = pe.PrefixEvictionVecEnv(3, seed=0, capacity_frac=frac, **kw)
            pol = make_policy(name, vec, pe.ENV_ID)
            obs, ratios = vec.reset(), {}
            while len(ratios) < 3:
                obs, _, done, infos = vec.step(np.asarray(pol.act(obs, vec.action_masks())))
                for e in np.flatnonzero(done):
                    ratios.setdefault(int(e), infos[e]["metrics"]["block_hit_ratio"])
            got[name] = float(np.mean(list(ratios.values())))
        assert got["zoo"] > 1.08 * got["lru"], (frac, got)


@pytest.mark.parametrize("frac", [0.01, 0.05, 0.1, 0.25])
def test_s3fifo_matches_libcachesim_on_mooncake(frac, shared_traces):
    """chain=False S3-FIFO equals libCacheSim's S3FIFO (the libcachesim package) hit for hit on
    the first 3,000 requests of the real Mooncake conversation trace, at four capacities."""
    lcs = pytest.importorskip("libcachesim", reason="libcachesim not installed (pip install libcachesim)")
    tr = traces.load_trace(str(shared_traces / "mooncake_conversation.jsonl")).select(slice(0, 3000))
    refs = tr.block_ids.tolist()
    U = len(set(refs))
    C = max(20, round(frac * U))
    cache = lcs.S3FIFO(cache_size=C)
    want = 0
    for b in refs:
        req = lcs.Request()
        req.obj_id, req.obj_size = int(b) + 1, 1  # ids are opaque keys; 0 is libCacheSim's "none"
        want += bool(cache.get(req))
    assert run(tr, "s3fifo", C)["block_hits"] == want == ref_s3fifo(refs, C)


def test_s3fifo_chain_mode_evicts_main_when_small_queue_is_all_pinned():
    """Chain mode: a request whose own (pinned) blocks fill S3-FIFO's small queue evicts from the
    main queue instead of bypassing the cache while the main queue has evictable blocks."""
    a, b = list(range(1, 21)), list(range(101, 111))
    tr = chain_trace([a, a, a, b])  # a's blocks reach M; b's first two fill S and stay pinned
    for policy in ("lru", "s3fifo"):
        m = run(tr, policy, 20, chain=True)
        assert m["bypassed_blocks"] == 0, policy
        assert m["block_hits"] == 40, policy


def test_reinserted_counts_evictions_of_the_block_id_since_warm_up():
    """The candidate feature ``reinserted`` is log1p of how often the candidate's block id was
    evicted since the episode's warm-up began: the per-id counts add up to the env's own eviction
    counter (no warm-up here, so both start at the reset), and ids evicted earlier come back."""
    kw = {"trace": _conv_trace(600.0), "window_requests": 1000, "warmup_requests": 0, "capacity_frac": 0.02}
    vec = pe.PrefixEvictionVecEnv(1, seed=3, **kw)
    vec.reset()
    F, G = pe.K.N_CAND, pe.K.N_GLOBAL
    f = pe.K.CANDIDATE_FEATURES.index("reinserted")
    rng = np.random.default_rng(0)
    seen_positive = False
    for _ in range(5000):
        n_evict = vec.state.n_evict[0]
        assert int(n_evict.sum()) == int(vec.state.iv[0, pe.K.I_EVICTIONS])
        n = int(vec.action_masks()[0].sum())
        blocks = vec.state.key[0, vec._cands[0, :n]]
        got = vec._obs[0, G + f::F][:n]
        np.testing.assert_allclose(got, np.log1p(n_evict[blocks]), rtol=1e-6)
        seen_positive |= bool((got > 0).any())
        _, _, done, _ = vec.step(_masked_random(rng, vec.action_masks()))
        if done[0] or seen_positive:
            break
    assert seen_positive


def _episode(trace: Trace, capacity_frac: float, policy: str = "lru", **kw) -> tuple[dict, tuple[int, ...]]:
    vec = pe.PrefixEvictionVecEnv(1, seed=0, trace=trace, split="all", window_requests=len(trace),
                                  warmup_requests=0, capacity_frac=capacity_frac, **kw)
    pol = make_policy(policy, vec, pe.ENV_ID)
    obs = vec.reset()
    for _ in range(10**6):
        obs, _, done, infos = vec.step(np.asarray(pol.act(obs, vec.action_masks())))
        if done[0]:
            return infos[0]["metrics"], vec.caps
    raise AssertionError("episode did not end")


def test_full_blocks_only_caches_no_part_filled_block_as_vllm():
    """full_blocks_only=True: a request's part-filled last block is never cached (vLLM's automatic prefix
    caching hashes full blocks only), so it is neither a reference nor a hit, and a request shorter than one
    block references nothing; its full blocks behave as before. Default: the part-filled block is cached."""
    # chain mode, nothing evicted: [1,2,3] with 3 part-filled; [1,2,4] full; [1,2,3] again; [5] of 100 tokens;
    # [1,2,4] again
    tr = chain_trace([[1, 2, 3], [1, 2, 4], [1, 2, 3], [5], [1, 2, 4]],
                     tokens=[3 * BS - 100, 3 * BS, 3 * BS - 100, 100, 3 * BS])
    m, _ = _episode(tr, 1.0, chain=True)
    assert (m["block_refs"], m["block_hits"]) == (13, 8)  # 3 is hit by the third request
    m, _ = _episode(tr, 1.0, chain=True, full_blocks_only=True)
    assert (m["block_refs"], m["block_hits"]) == (10, 7)  # 3 and 5 are recomputed, never cached
    # independent objects under LRU: the textbook LRU over the full blocks' references alone
    rng = np.random.default_rng(5)
    refs = rng.zipf(1.3, 3000) % 200
    full = rng.random(3000) < 0.7
    tr = chain_trace([[int(r)] for r in refs], tokens=list(np.where(full, BS, 137)))
    kept = refs[full]
    U = len(np.unique(kept))
    for C in (5, 20, 60):
        m, caps = _episode(tr, C / U, full_blocks_only=True)
        assert caps == (C,)
        assert m["block_hits"] == ref_lru(list(kept), C) and m["block_refs"] == len(kept)
