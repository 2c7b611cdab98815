"""servegym/PrefixEviction-v0: which prefix-cache block to evict when an insertion needs room.

``env`` the config, scenario, native VecEnv and Gymnasium view; ``kernels`` the cache replay with
its recency, pinning and candidate orders; ``ttft`` the TTFT replay of a run's hits through the
cluster model; ``bench`` the throughput benchmark.
"""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"ENV_ID": "env", "PrefixEvictionConfig": "env", "PrefixEvictionEnv": "env", "PrefixEvictionVecEnv": "env"})

__all__ = ["ENV_ID", "PrefixEvictionConfig", "PrefixEvictionEnv", "PrefixEvictionVecEnv"]
