"""servegym/KVAdmission-v0: admission, prefill token budget and preemption on one replica under load.

``env`` the config, scenario, native VecEnv and Gymnasium view; ``kernels`` the numba step and
observation kernels; ``bench`` the throughput benchmark (``python -m envs.bench``).
"""

from envs.kv_admission.env import ENV_ID, KVAdmissionConfig, KVAdmissionEnv, KVAdmissionVecEnv

__all__ = ["ENV_ID", "KVAdmissionConfig", "KVAdmissionEnv", "KVAdmissionVecEnv"]
