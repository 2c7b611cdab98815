"""servegym/ExpertPlacement-v0: MoE expert placement and replication under drifting expert load.

``sim`` the config and the cluster model (MoE layer time, migration); ``algos`` the placement
algorithms (round-robin, LPT, EPLB) as numba functions; ``kernels`` the masked sub-step kernels;
``env`` the native VecEnv and Gymnasium view; ``parallel`` the same decision as a PettingZoo
``ParallelEnv`` with one agent per GPU; ``bench`` the throughput benchmark.
"""

from envs.expert_placement.env import ENV_ID, ExpertPlacementEnv, ExpertPlacementVecEnv
from envs.expert_placement.sim import ExpertPlacementConfig

__all__ = ["ENV_ID", "ExpertPlacementConfig", "ExpertPlacementEnv", "ExpertPlacementVecEnv"]
