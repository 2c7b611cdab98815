"""servegym environments: the vectorized cluster model (``envs.core``) and one package per decision.

Importing this package registers the Gymnasium ids: ``gymnasium.make("servegym/KVAdmission-v0")``
gives the single env, ``gymnasium.make_vec("servegym/KVAdmission-v0", n)`` the native batch behind
Gymnasium's vector API (``envs.vector``). PettingZoo environments: ``make_parallel(id)``.

Every environment package provides a native SB3 ``VecEnv`` (listed in ``VEC_ENVS``, built by
``make_vec``; their common base is ``envs.native_vec.NativeVecEnv``) that ``agents.evaluate``, ``train.py`` and the leaderboard drive the same way:

- constructor ``(num_envs, seed=None, **config_fields)``; an unknown or invalid field raises a
  ``ValueError``/``TypeError`` naming it. Fields every environment accepts: ``trace`` (built-in
  name, path, or ``traces.Trace``), ``split`` (``"train"`` | ``"test"`` held-out | ``"all"``),
  ``window_order`` (``"random"`` | ``"sequential"``: env i of a batch plays held-out episode i,
  so two policies see the same episodes).
- ``action_masks() -> [E, n_actions] bool``.
- ``sweep() -> (knob, values)``: the config field evaluation sweeps (load, cache capacity ...).
- ``table_metrics``: metric keys of the printed table, the main one first.
- on an episode's end, ``infos[e]["metrics"]`` holds that episode's metrics (the JSON keys its
  issue names, from ``envs.metrics``) and ``infos[e]["episode"] = {"r", "l"}``; optionally
  ``infos[e]["requests"]`` (per-request arrays such as ``ttft``) and ``infos[e]["series"]``
  (name -> 1-D array over the episode, e.g. load imbalance per step) for the leaderboard's plots.
"""

from gymnasium.envs.registration import register, registry

# Environment id -> (package, class prefix): envs.<package>.env holds <prefix>Env (the
# Gymnasium view, E = 1), <prefix>VecEnv (the native SB3 batch) and <prefix>VectorEnv (the
# Gymnasium vector facade, gymnasium.make_vec's vector_entry_point).
PACKAGES = {
    "servegym/KVAdmission-v0": ("kv_admission", "KVAdmission"),
    "servegym/Autoscale-v0": ("autoscale", "Autoscale"),
    "servegym/ExpertPlacement-v0": ("expert_placement", "ExpertPlacement"),
    "servegym/Routing-v0": ("routing", "Routing"),
    "servegym/PrefixEviction-v0": ("prefix_eviction", "PrefixEviction"),
}
ENVS = {i: f"envs.{p}.env:{c}Env" for i, (p, c) in PACKAGES.items()}
VEC_ENVS = {i: f"envs.{p}.env:{c}VecEnv" for i, (p, c) in PACKAGES.items()}
VECTOR_ENVS = {i: f"envs.{p}.env:{c}VectorEnv" for i, (p, c) in PACKAGES.items()}
# PettingZoo environments: id -> module-level ``parallel_env`` factory.
PARALLEL_ENVS = {
    "servegym/MultiCluster-v0": "envs.multi.env:parallel_env",
    "servegym/ExpertPlacementParallel-v0": "envs.expert_placement.parallel:parallel_env",
}

for _id, _entry in ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry, vector_entry_point=VECTOR_ENVS[_id])


def _load(entry: str):
    import importlib

    module, attr = entry.split(":")
    return getattr(importlib.import_module(module), attr)


def make_parallel(env_id: str, **kwargs):
    """The PettingZoo ``ParallelEnv`` of ``env_id`` (see ``PARALLEL_ENVS``)."""
    if env_id not in PARALLEL_ENVS:
        raise KeyError(f"unknown PettingZoo environment {env_id!r}; known: {', '.join(PARALLEL_ENVS)}")
    return _load(PARALLEL_ENVS[env_id])(**kwargs)


def make_vec(env_id: str, num_envs: int, seed: int | None = None, **kwargs):
    """The native batched env of ``env_id`` (an SB3 VecEnv); ``KeyError`` for an unknown id."""
    if env_id not in VEC_ENVS:
        raise KeyError(f"unknown environment {env_id!r}; known: {', '.join(VEC_ENVS)}")
    return _load(VEC_ENVS[env_id])(num_envs, seed=seed, **kwargs)
