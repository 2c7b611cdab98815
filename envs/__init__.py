"""servegym environments: the vectorized cluster model (``envs.core``) and one module per decision.

Importing this package registers the Gymnasium ids (``gymnasium.make("servegym/KVAdmission-v0")``).
"""

from gymnasium.envs.registration import register, registry

ENVS = {
    "servegym/KVAdmission-v0": "envs.kv_admission:KVAdmissionEnv",
}
VEC_ENVS = {
    "servegym/KVAdmission-v0": "envs.kv_admission:KVAdmissionVecEnv",
}

for _id, _entry in ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)


def make_vec(env_id: str, num_envs: int, seed: int | None = None, **kwargs):
    """The native batched env of ``env_id`` (an SB3 VecEnv)."""
    import importlib

    if env_id not in VEC_ENVS:
        raise KeyError(f"unknown environment {env_id!r}; known: {', '.join(VEC_ENVS)}")
    module, cls = VEC_ENVS[env_id].split(":")
    return getattr(importlib.import_module(module), cls)(num_envs, seed=seed, **kwargs)
