"""servegym/Routing-v0: which replica serves each arriving request (prefix affinity vs load).

``env`` the config, scenario, native VecEnv and Gymnasium view; ``kernels`` the numba kernels
that run the replicas between arrivals and write the router's observation; ``bench`` the
throughput benchmark.
"""

from envs.routing.env import ENV_ID, RoutingConfig, RoutingEnv, RoutingVecEnv

__all__ = ["ENV_ID", "RoutingConfig", "RoutingEnv", "RoutingVecEnv"]
