"""PrefixEviction-v0 leaf-only eviction (``evict_leaves_only``, issue 21): no stranding eviction
ever happens with it on, Belady loses nothing to it (the exact statement of the env docstring),
the leaderboard's scenario ids that carry it, and determinism."""

from __future__ import annotations

import numpy as np
import pytest

import traces
from agents.scenarios import SCENARIOS
from envs.prefix_eviction import env as pe
from envs.prefix_eviction import kernels as K
from test_prefix_eviction import chain_trace, run


def _masked_random_rollout(vec, seed: int, check_leaves: bool) -> list[dict]:
    """Every env plays one episode with uniformly random legal actions; returns their metrics.
    ``check_leaves``: at every decision, every legal candidate is an unpinned leaf."""
    rng = np.random.default_rng(seed)
    vec.reset()
    out: dict[int, dict] = {}
    while len(out) < vec.num_envs:
        mask = vec.action_masks()
        if check_leaves:
            st = vec.state
            for e in range(vec.num_envs):
                if e in out or vec._noop[e]:
                    continue
                cs = vec._cands[e, mask[e]]
                q = int(st.iv[e, K.I_REQ])
                assert (st.desc[e, st.key[e, cs]] == 0).all() and (st.pin[e, cs] != q).all()
        keys = rng.random(mask.shape)
        keys[~mask] = -1
        _, _, done, infos = vec.step(keys.argmax(1))
        for e in np.flatnonzero(done):
            out.setdefault(int(e), infos[e]["metrics"])
    return [out[e] for e in range(vec.num_envs)]


@pytest.mark.parametrize("candidate_set", ["sampled", "lru"])
def test_leaf_only_never_strands_and_random_choice_without_it_does(candidate_set):
    tr = traces.load_trace("mooncake_conv", seed=1, duration_s=240.0)
    kw = {"trace": tr, "window_requests": 150, "warmup_requests": 100, "capacity_frac": 0.05,
          "candidate_set": candidate_set}
    on = _masked_random_rollout(pe.PrefixEvictionVecEnv(3, seed=2, **kw), 5, check_leaves=True)
    off = _masked_random_rollout(pe.PrefixEvictionVecEnv(3, seed=2, evict_leaves_only=False, **kw), 5, False)
    assert all(m["decisions"] > 20 for m in on)
    assert [m["stranding_evictions"] for m in on] == [0.0, 0.0, 0.0]
    assert sum(m["stranding_evictions"] for m in off) > 10  # the check above can fail


def _random_tree_trace(rng: np.random.Generator, n_nodes: int, n_requests: int, max_len: int):
    """Requests that are root-to-node paths of a random prefix tree (ids = nodes), each at most
    ``max_len`` blocks, nodes drawn with Zipf-like popularity so that prefixes are reused."""
    parent = np.full(n_nodes, -1)
    depth = np.zeros(n_nodes, int)
    for v in range(1, n_nodes):
        p = int(rng.integers(-1, v))  # -1: a new root
        if p >= 0 and depth[p] + 1 < max_len:
            parent[v], depth[v] = p, depth[p] + 1
    weight = 1.0 / np.arange(1, n_nodes + 1) ** 0.8
    chains = []
    for v in rng.choice(n_nodes, n_requests, p=weight / weight.sum()):
        path = [int(v)]
        while parent[path[-1]] >= 0:
            path.append(int(parent[path[-1]]))
        chains.append([x + 1 for x in path[::-1]])
    return chain_trace(chains)


@pytest.mark.parametrize("seed", range(6))
def test_belady_victim_is_always_a_leaf_so_leaf_only_costs_the_bound_nothing(seed):
    """The env docstring's statement: an inner block's next use precedes each cached
    descendant's, so Belady never evicts one (no stranding eviction), and Belady among every
    evictable block (candidate_set="lru", K >= capacity) makes exactly the same hits with the
    leaf-only constraint as without it, both equal to full Belady's."""
    rng = np.random.default_rng(seed)
    C = int(rng.integers(4, 12))
    tr = _random_tree_trace(rng, n_nodes=int(rng.integers(20, 60)), n_requests=120, max_len=C)
    full = run(tr, "belady", C, chain=True)
    assert full["stranding_evictions"] == 0 and full["evictions"] > 10
    every = {"candidate_set": "lru", "candidates": max(C, 2)}
    leaf = run(tr, "belady_candidates", C, chain=True, evict_leaves_only=True, **every)
    anyb = run(tr, "belady_candidates", C, chain=True, evict_leaves_only=False, **every)
    assert leaf["block_hits"] == anyb["block_hits"] == full["block_hits"]
    assert leaf["stranding_evictions"] == anyb["stranding_evictions"] == 0
    assert leaf["decisions"] > 0


def test_leaf_only_is_deterministic_per_seed():
    tr = traces.load_trace("mooncake_conv", seed=1, duration_s=240.0)
    kw = {"trace": tr, "window_requests": 150, "warmup_requests": 100, "capacity_frac": (0.05, 0.1)}
    a = _masked_random_rollout(pe.PrefixEvictionVecEnv(2, seed=7, **kw), 3, False)
    b = _masked_random_rollout(pe.PrefixEvictionVecEnv(2, seed=7, **kw), 3, False)
    c = _masked_random_rollout(pe.PrefixEvictionVecEnv(2, seed=8, **kw), 3, False)
    assert a == b and a != c


def test_scenarios_carry_leaf_only_in_their_versioned_ids():
    prefix = [s for s in SCENARIOS if s.env_id == pe.ENV_ID]
    assert {s.id for s in prefix if s.track == "main"} == {
        f"prefix_eviction/mooncake_conversation/llama3.1-8b-h100/capacity{f}/v4" for f in (0.01, 0.05, 0.1, 0.25)}
    transfer = [s for s in prefix if s.track == "transfer"]
    assert transfer and all(s.id.endswith("/v3") for s in transfer)
    # The meaning of an id does not hang on the config default.
    assert all(s.env_kwargs["evict_leaves_only"] is True for s in prefix)


def test_evict_leaves_only_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^PrefixEviction: evict_leaves_only must be bool, got 'yes' \(str\)$"):
        pe.PrefixEvictionVecEnv(1, evict_leaves_only="yes", window_requests=30, warmup_requests=0)
