"""servegym/Autoscale-v0: replicas per GPU type every control interval, with cold starts.

``env`` the config, scenario (generated or replayed days), native VecEnv and Gymnasium view;
``kernels`` the fluid model of the replica pools and the DP oracle's plan; ``model`` the replica
curves measured once on the full cluster model (``envs.core``); ``full`` the replay of a schedule
on the full cluster model; ``bench`` the throughput benchmark.
"""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"ENV_ID": "env", "AutoscaleConfig": "env", "AutoscaleEnv": "env", "AutoscaleVecEnv": "env"})

__all__ = ["ENV_ID", "AutoscaleConfig", "AutoscaleEnv", "AutoscaleVecEnv"]
