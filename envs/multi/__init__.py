"""The multi-agent cluster (PettingZoo ``ParallelEnv``): ingress routers, per-replica admission
controllers and an autoscaler on one clock with one shared reward.

``env`` the config, the shared cluster core, the ``ParallelEnv`` and per-role VecEnv views;
``kernels`` the numba kernels of the joint step and the autoscaler's observation.
"""

from envs.multi.env import MultiClusterEnv, MultiConfig

__all__ = ["MultiClusterEnv", "MultiConfig"]
