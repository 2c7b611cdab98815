"""The multi-agent cluster (PettingZoo ``ParallelEnv``): ingress routers, per-replica admission
controllers and an autoscaler on one clock with one shared reward.

``env`` the config, the shared cluster core, the ``ParallelEnv`` and per-role VecEnv views;
``kernels`` the numba kernels of the joint step and the autoscaler's observation.
"""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"MultiClusterEnv": "env", "MultiConfig": "env"})

__all__ = ["MultiClusterEnv", "MultiConfig"]
