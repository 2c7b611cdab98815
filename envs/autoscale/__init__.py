"""servegym/Autoscale-v0: replicas per GPU type every control interval, with cold starts.

``env`` the config, scenario (generated or replayed days), native VecEnv and Gymnasium view;
``kernels`` the fluid model of the replica pools and the DP oracle's plan; ``model`` the replica
curves measured once on the full cluster model (``envs.core``); ``full`` the replay of a schedule
on the full cluster model; ``bench`` the throughput benchmark.
"""

from envs.autoscale.env import ENV_ID, AutoscaleConfig, AutoscaleEnv, AutoscaleVecEnv

__all__ = ["ENV_ID", "AutoscaleConfig", "AutoscaleEnv", "AutoscaleVecEnv"]
