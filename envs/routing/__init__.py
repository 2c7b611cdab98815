"""servegym/Routing-v0: which replica serves each arriving request (prefix affinity vs load).

``env`` the config, scenario, native VecEnv and Gymnasium view; ``kernels`` the numba kernels
that run the replicas between arrivals and write the router's observation; ``bench`` the
throughput benchmark.
"""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"ENV_ID": "env", "RoutingConfig": "env", "RoutingEnv": "env", "RoutingVecEnv": "env"})

__all__ = ["ENV_ID", "RoutingConfig", "RoutingEnv", "RoutingVecEnv"]
