"""servegym/KVAdmission-v0: admission, prefill token budget and preemption on one replica under load.

``env`` the config, scenario, native VecEnv and Gymnasium view; ``kernels`` the numba step and
observation kernels; ``bench`` the throughput benchmark (``python -m envs.bench``).
"""

from envs import lazy_exports

# imported on first use: reading the observation version in kernels needs no SB3/torch (envs.lazy_exports)
__getattr__ = lazy_exports(__name__, {"ENV_ID": "env", "KVAdmissionConfig": "env", "KVAdmissionEnv": "env", "KVAdmissionVecEnv": "env"})

__all__ = ["ENV_ID", "KVAdmissionConfig", "KVAdmissionEnv", "KVAdmissionVecEnv"]
