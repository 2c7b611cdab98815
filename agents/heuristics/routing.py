"""Heuristics of servegym/Routing-v0, each routing as the system it is named after does.

All act from the observation and the mask alone (the evaluator cannot tell them from a learned
policy): per-replica load reports, prefix-hit lengths and the request's prefix hash are part of
the observation every policy sees (``envs.routing.kernels``). Masked replicas (down, or queue
full) are never chosen: each picks the best legal replica under its own rule.
"""

from __future__ import annotations

import numpy as np

from agents.policy_base import register_heuristics
from envs.routing import env as rt
from envs.routing import kernels as K

ENV_ID = rt.ENV_ID
_KEY_SCALE = float(1 << K.HASH_BITS)


def replica_feature(obs: np.ndarray, name: str, R: int) -> np.ndarray:
    """[E, R] values of one per-replica feature."""
    f = K.REPLICA_FEATURES.index(name)
    return obs[:, K.G + f : K.G + R * K.F : K.F]


def request_feature(obs: np.ndarray, name: str) -> np.ndarray:
    return obs[:, K.REQUEST_FEATURES.index(name)]


def _legal(obs: np.ndarray, mask: np.ndarray | None, R: int) -> np.ndarray:
    return np.ones((obs.shape[0], R), bool) if mask is None else np.asarray(mask, bool)


def _argmin_legal(score: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Lowest score among legal replicas (ties: lowest index)."""
    return np.where(legal, score, np.inf).argmin(1)


def replica_count(obs: np.ndarray, name: str, R: int) -> np.ndarray:
    """[E, R] request counts of a count feature (``queued``, ``running``, ``sent``: the observation
    holds them in units of ``count_unit``), rounded to whole requests against float32 rounding."""
    unit = request_feature(obs, "count_unit").astype(np.float64) * K.COUNT_SCALE
    return np.rint(replica_feature(obs, name, R).astype(np.float64) * unit[:, None])


def outstanding_requests(obs: np.ndarray, R: int) -> np.ndarray:
    """Queued + running requests per replica (as reported), plus those sent since the report: [E, R]
    request counts (the observation holds them in units of ``count_unit``, a replica's requests per
    TTFT SLO; rounded to whole requests against float32 rounding)."""
    unit = request_feature(obs, "count_unit").astype(np.float64) * K.COUNT_SCALE
    rel = (replica_feature(obs, "queued", R).astype(np.float64) + replica_feature(obs, "running", R)
           + replica_feature(obs, "sent", R))
    return np.rint(rel * unit[:, None])


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 finalizer over uint64 arrays (salted: independent hash functions)."""
    z = (x.astype(np.uint64) + np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class HashRing:
    """Consistent hashing (Karger et al., STOC'97): ``vnodes`` points per replica on a 64-bit ring;
    a key goes to the first point clockwise whose replica is legal."""

    def __init__(self, R: int, vnodes: int = 100, salt: int = 0):
        ids = np.repeat(np.arange(R, dtype=np.uint64), vnodes)
        v = np.tile(np.arange(vnodes, dtype=np.uint64), R)
        pts = _mix(ids * np.uint64(1 << 20) + v, salt + 1)
        order = np.argsort(pts, kind="stable")
        self.points, self.owner, self.salt = pts[order], ids[order].astype(np.int64), salt

    def candidates(self, keys: np.ndarray) -> np.ndarray:
        """[E, P] replicas in clockwise order from each key's position (P = all ring points)."""
        h = _mix(keys, self.salt + 7)
        start = np.searchsorted(self.points, h) % len(self.points)
        idx = (start[:, None] + np.arange(len(self.points))[None, :]) % len(self.points)
        return self.owner[idx]

    def lookup(self, keys: np.ndarray, legal: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """First legal replica clockwise from each key (skipping ``exclude`` where given)."""
        cand = self.candidates(keys)
        ok = np.take_along_axis(legal, cand, 1)
        if exclude is not None:
            ok &= cand != exclude[:, None]
        first = np.where(ok.any(1), ok.argmax(1), 0)
        return cand[np.arange(len(keys)), first]


def prefix_keys(obs: np.ndarray) -> np.ndarray:
    return np.rint(request_feature(obs, "prefix_key") * _KEY_SCALE).astype(np.uint64)


class RoundRobin:
    """Round-robin over the replicas (the default of NGINX/Envoy upstreams and of SGLang's router
    ``--policy round_robin``): one counter per env of the batch, skipping masked replicas."""

    name = "round_robin"
    row_independent = True  # one counter per env, its own history (agents.policy_base.Policy)

    def __init__(self, env, seed: int = 0):
        self.R = env.action_space.n
        self.next = np.zeros(env.num_envs, np.int64)

    def act(self, obs, action_mask):
        legal = _legal(obs, action_mask, self.R)
        E = obs.shape[0]
        if self.next.shape[0] != E:
            self.next = np.zeros(E, np.int64)
        order = (self.next[:, None] + np.arange(self.R)[None, :]) % self.R
        ok = np.take_along_axis(legal, order, 1)
        a = order[np.arange(E), ok.argmax(1)]
        self.next = (a + 1) % self.R
        return a


class JSQ:
    """Join the shortest queue, measured in outstanding prefill tokens (least outstanding work;
    JSQ: Winston 1977, Gupta et al. 2007; the least-request/least-load scorers of Envoy, AIBrix and
    the vLLM production-stack router). Ties go to fewer outstanding requests, then lower index."""

    name = "jsq"
    row_independent = True  # a function of each env's own observation and mask (agents.policy_base.Policy)

    def __init__(self, env, seed: int = 0):
        self.R = env.action_space.n

    def act(self, obs, action_mask):
        legal = _legal(obs, action_mask, self.R)
        work = replica_feature(obs, "outstanding", self.R).astype(np.float64)
        reqs = outstanding_requests(obs, self.R)
        return _argmin_legal(work + 1e-9 * reqs, legal)


class PowerOfTwo:
    """Power of two choices (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
    IEEE TPDS 2001): two distinct legal replicas drawn uniformly, the one with fewer outstanding
    requests gets the request (ties: the first drawn)."""

    name = "p2c"

    def __init__(self, env, seed: int = 0):
        self.R = env.action_space.n
        self.rng = np.random.default_rng(seed)

    def act(self, obs, action_mask):
        legal = _legal(obs, action_mask, self.R)
        E = obs.shape[0]
        keys = np.where(legal, self.rng.random((E, self.R)), -1.0)
        two = np.argsort(-keys, axis=1)[:, :2]
        n_legal = legal.sum(1)
        two[:, 1] = np.where(n_legal >= 2, two[:, 1], two[:, 0])
        load = outstanding_requests(obs, self.R)
        l0 = load[np.arange(E), two[:, 0]]
        l1 = load[np.arange(E), two[:, 1]]
        return np.where(l1 < l0, two[:, 1], two[:, 0])


class PrefixHash:
    """Consistent-hash prefix affinity: the request's first prefix blocks (``prefix_key``) are
    hashed onto a ring of replicas (Karger et al. 1997), so every turn of a conversation lands on
    one replica; load is ignored (as session-affinity / prefix-hash routing in the vLLM
    production-stack router, llm-d's prefix scorer in isolation and Ray Serve's prefix routing)."""

    name = "prefix_hash"
    row_independent = True  # a function of each env's own observation and mask (agents.policy_base.Policy)

    def __init__(self, env, seed: int = 0):
        self.R = env.action_space.n
        self.ring = HashRing(self.R, salt=0)

    def act(self, obs, action_mask):
        return self.ring.lookup(prefix_keys(obs), _legal(obs, action_mask, self.R))


class SGLangCacheAware:
    """SGLang router ``--policy cache_aware`` (sgl-router ``policies/cache_aware.rs``), with its
    defaults cache_threshold 0.5, balance_abs_threshold 32, balance_rel_threshold 1.1:

    * load = the worker's outstanding requests; the system is imbalanced when
      ``max - min > balance_abs_threshold`` and ``max > min * balance_rel_threshold``; then the
      least-loaded worker gets the request;
    * otherwise the worker with the longest prefix match gets it if the match rate (matched /
      prompt) exceeds cache_threshold, else the worker with the smallest tree (the least-filled
      prefix cache here).

    The router's approximate radix tree is replaced by the replicas' exact caches (``prefix_hit``,
    ``cache_fill``), as SGLang's model gateway does with KV events; the approximate tree of the
    least-fed worker is the smallest, so ties among full caches go to fewer outstanding requests.
    """

    name = "sglang_cache_aware"
    row_independent = True  # a function of each env's own observation and mask (agents.policy_base.Policy)

    def __init__(self, env, seed: int = 0, cache_threshold: float = 0.5, balance_abs: float = 32,
                 balance_rel: float = 1.1):
        self.R = env.action_space.n
        self.cache_threshold, self.balance_abs, self.balance_rel = cache_threshold, balance_abs, balance_rel

    def act(self, obs, action_mask):
        R = self.R
        legal = _legal(obs, action_mask, R)
        load = outstanding_requests(obs, R)
        mx = np.where(legal, load, -np.inf).max(1)
        mn = np.where(legal, load, np.inf).min(1)
        imbalanced = (mx - mn > self.balance_abs) & (mx > mn * self.balance_rel)
        least = _argmin_legal(load, legal)
        hit = replica_feature(obs, "prefix_hit", R)
        best_hit = np.where(legal, hit, -1.0).argmax(1)
        rate = hit[np.arange(len(hit)), best_hit]
        # Smallest tree; with full caches (ties) the tree that received least: fewest outstanding.
        smallest = _argmin_legal(replica_feature(obs, "cache_fill", R) + 1e-6 * load, legal)
        cache = np.where(rate > self.cache_threshold, best_hit, smallest)
        return np.where(imbalanced, least, cache)


class DualMap:
    """DualMap (Yuan et al., "DualMap: Enabling Both Cache Affinity and Load Balancing for
    Distributed LLM Serving", ICLR'26, arXiv:2602.06502): two independent hash functions of the
    request's prefix map it to two candidate replicas (two consistent-hash rings); SLO-aware
    routing sends it to the candidate with the better cache affinity (longer prefix hit) unless
    that candidate's estimated TTFT exceeds the TTFT SLO, then to the candidate with the lower
    estimated TTFT (the power of two choices among prefix-bound candidates).

    Not modelled: the paper's hotspot-aware rebalancing migrates queued requests between the two
    candidates (Routing-v0 has no migration action) and its adaptive prefix length (the hash here
    covers the env's ``hash_blocks`` first blocks).
    """

    name = "dualmap"
    row_independent = True  # a function of each env's own observation and mask (agents.policy_base.Policy)

    def __init__(self, env, seed: int = 0):
        self.R = env.action_space.n
        self.rings = (HashRing(self.R, salt=0), HashRing(self.R, salt=0x5DEECE66D))

    def act(self, obs, action_mask):
        R = self.R
        legal = _legal(obs, action_mask, R)
        keys = prefix_keys(obs)
        c1 = self.rings[0].lookup(keys, legal)
        c2 = self.rings[1].lookup(keys, legal, exclude=c1)
        rows = np.arange(obs.shape[0])
        hit = replica_feature(obs, "prefix_hit", R)
        ttft = replica_feature(obs, "est_ttft", R)
        h1, h2, t1, t2 = hit[rows, c1], hit[rows, c2], ttft[rows, c1], ttft[rows, c2]
        affine = np.where(h2 > h1, c2, c1)
        t_aff = np.where(h2 > h1, t2, t1)
        lighter = np.where(t2 < t1, c2, c1)
        return np.where(t_aff <= 1.0, affine, lighter)


register_heuristics(
    ENV_ID,
    {
        "round_robin": RoundRobin,
        "jsq": JSQ,
        "p2c": PowerOfTwo,
        "prefix_hash": PrefixHash,
        "sglang_cache_aware": SGLangCacheAware,
        "dualmap": DualMap,
    },
)
