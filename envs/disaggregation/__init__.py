"""servegym/Disaggregation-v0: prefill / decode / colocated roles of serving instances over time
(DistServe, Splitwise, P/D-Serve). See ``env.py`` for the environment's sections."""

from envs.disaggregation.config import DisaggregationConfig
from envs.disaggregation.env import ENV_ID, DisaggregationEnv, DisaggregationVecEnv

__all__ = ["ENV_ID", "DisaggregationConfig", "DisaggregationEnv", "DisaggregationVecEnv"]
