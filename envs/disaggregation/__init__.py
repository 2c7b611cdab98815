"""servegym/Disaggregation-v0: prefill / decode / colocated roles of serving instances over time
(DistServe, Splitwise, P/D-Serve). See ``env.py`` for the environment's sections."""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"DisaggregationConfig": "config", "ENV_ID": "env", "DisaggregationEnv": "env", "DisaggregationVecEnv": "env"})

__all__ = ["ENV_ID", "DisaggregationConfig", "DisaggregationEnv", "DisaggregationVecEnv"]
