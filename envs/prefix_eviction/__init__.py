"""servegym/PrefixEviction-v0: which prefix-cache block to evict when an insertion needs room.

``env`` the config, scenario, native VecEnv and Gymnasium view; ``kernels`` the cache replay with
its recency, pinning and candidate orders; ``ttft`` the TTFT replay of a run's hits through the
cluster model; ``bench`` the throughput benchmark.
"""

from envs.prefix_eviction.env import ENV_ID, PrefixEvictionConfig, PrefixEvictionEnv, PrefixEvictionVecEnv

__all__ = ["ENV_ID", "PrefixEvictionConfig", "PrefixEvictionEnv", "PrefixEvictionVecEnv"]
