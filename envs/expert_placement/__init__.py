"""servegym/ExpertPlacement-v0: MoE expert placement and replication under drifting expert load.

``sim`` the config and the cluster model (MoE layer time, migration); ``algos`` the placement
algorithms (round-robin, LPT, EPLB) as numba functions; ``kernels`` the masked sub-step kernels;
``env`` the native VecEnv and Gymnasium view; ``parallel`` the same decision as a PettingZoo
``ParallelEnv`` with one agent per GPU; ``bench`` the throughput benchmark.
"""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"ENV_ID": "env", "ExpertPlacementEnv": "env", "ExpertPlacementVecEnv": "env", "ExpertPlacementConfig": "sim"})

__all__ = ["ENV_ID", "ExpertPlacementConfig", "ExpertPlacementEnv", "ExpertPlacementVecEnv"]
