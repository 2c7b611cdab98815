"""Eviction policies of servegym/PrefixEviction-v0, each as the system or paper it is named after.

The victim order of each policy is kept natively by the env's kernel over all cached blocks
(a recency list, an insertion list, S3-FIFO's queues or a priority heap), because several of
them evict blocks that need not be among the K least recently used ones the learned agent sees.
A factory selects its order with ``env.set_ranking`` (the privileged channel: Belady's next-use
times enter only there) and the kernel then evicts that order's first candidate itself, without
a Python round trip per eviction (``native``: an episode is one step, so the evaluator's
per-decision latency of these policies is per episode and means nothing). ``FirstCandidate``
takes the same victim when a ranking is used with decisions exposed. Tests check each one against a plain-Python simulator of its textbook definition.
"""

from __future__ import annotations

import numpy as np

from agents.policy_base import register_heuristics
from envs.prefix_eviction import env as pe

ENV_ID = pe.ENV_ID


class FirstCandidate:
    """Evict the first legal candidate of the env's ranking."""

    def __init__(self, name: str):
        self.name = name

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        if action_mask is None:
            return np.zeros(obs.shape[0], np.int64)
        return action_mask.argmax(axis=1)


def _ranked(name: str):
    def factory(env, seed: int = 0) -> FirstCandidate:
        env.set_ranking(name, native=True)
        return FirstCandidate(name)

    return factory


lru = _ranked("lru")
lru.__doc__ = """LRU as vLLM V1 runs it (``vllm/v1/core/block_pool.py`` free-block queue, blocks freed in
reverse order by ``single_type_kv_cache_manager.py`` so tail blocks go first): evict the least
recently used block; in chain mode a request's chain counts as used tail first."""
lru_leaf = _ranked("lru_leaf")
lru_leaf.__doc__ = """SGLang's radix cache (``python/sglang/srt/mem_cache/radix_cache.py`` ``evict()``): only
leaves (blocks with no cached descendant) can go, least recently accessed leaf first."""
lfu = _ranked("lfu")
lfu.__doc__ = """LFU: evict the block with the fewest references since it was cached, least recently used
among equals (in-cache LFU, as libCacheSim's ``LFU.c``)."""
fifo = _ranked("fifo")
fifo.__doc__ = """FIFO: evict the block cached longest ago, whatever its use."""
s3fifo = _ranked("s3fifo")
s3fifo.__doc__ = """S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23) as
libCacheSim implements it (``libCacheSim/cache/eviction/S3FIFO.c``: small queue 10%, ghost 90%,
move-to-main threshold 2; with ``chain=False`` equal hit for hit to the ``libcachesim`` package,
tests/test_prefix_eviction.py): small/main/ghost FIFO queues, run natively by the kernel because its
eviction moves blocks between queues (the decision is therefore never exposed). Chain mode: when
the queue S3-FIFO would evict from holds only the current request's pinned blocks, the other queue
evicts (``envs.prefix_eviction_kernels.s3fifo_victim``)."""
gdsf = _ranked("gdsf")
gdsf.__doc__ = """GDSF (Cherkasova, "Improving WWW Proxies Performance with Greedy-Dual-Size-Frequency
Caching Policy", HP Labs 1998): priority H = L + freq * cost / size, cost = the block's prefill
seconds at its position (hwmodels), size = one block; evict the lowest H and set L to it."""
belady = _ranked("belady")
belady.__doc__ = """Belady's MIN (Belady 1966), the offline bound: evict the block whose next reference is
farthest in the future. Chain-aware by construction: a block's ancestors are referenced before
it in every request that uses it, so they always have earlier next uses and MIN evicts
descendants first (the cached set stays prefix-closed). Optimal for hits in ``chain=false``."""



class BeladyAmongCandidates:
    """Belady restricted to the candidates a learned policy is offered (the env's privileged
    ``teacher_actions``; DAgger's teacher): the bound of any policy choosing among them one
    eviction at a time, so the learned agent's gap splits into what its candidate set costs
    (this vs ``belady``) and what it fails to learn (it vs this)."""

    name = "belady_candidates"

    def __init__(self, env, seed: int = 0):
        self.env = env

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        return self.env.teacher_actions()


register_heuristics(
    ENV_ID,
    {"lru": lru, "lru_leaf": lru_leaf, "lfu": lfu, "fifo": fifo, "s3fifo": s3fifo, "gdsf": gdsf,
     "belady": belady, "belady_candidates": BeladyAmongCandidates},
)
