"""servegym environments: the vectorized cluster model (``envs.core``) and one module per decision.

Importing this package registers the Gymnasium ids (``gymnasium.make("servegym/KVAdmission-v0")``).

Every environment module provides a native SB3 ``VecEnv`` (listed in ``VEC_ENVS``, built by
``make_vec``) that ``agents.evaluate``, ``train.py`` and the leaderboard drive the same way:

- constructor ``(num_envs, seed=None, **config_fields)``; an unknown or invalid field raises a
  ``ValueError``/``TypeError`` naming it. Fields every environment accepts: ``trace`` (built-in
  name, path, or ``traces.Trace``), ``split`` (``"train"`` | ``"test"`` held-out | ``"all"``),
  ``window_order`` (``"random"`` | ``"sequential"``: env i of a batch plays held-out episode i,
  so two policies see the same episodes).
- ``action_masks() -> [E, n_actions] bool``.
- ``sweep() -> (knob, values)``: the config field evaluation sweeps (load, cache capacity ...).
- ``table_metrics``: metric keys of the printed table, the main one first.
- on an episode's end, ``infos[e]["metrics"]`` holds that episode's metrics (the JSON keys its
  issue names, from ``envs.metrics``) and ``infos[e]["episode"] = {"r", "l", "t"}``; optionally
  ``infos[e]["requests"]`` (per-request arrays such as ``ttft``) and ``infos[e]["series"]``
  (name -> 1-D array over the episode, e.g. load imbalance per step) for the leaderboard's plots.
"""

from gymnasium.envs.registration import register, registry

ENVS = {
    "servegym/KVAdmission-v0": "envs.kv_admission.env:KVAdmissionEnv",
    "servegym/Autoscale-v0": "envs.autoscale.env:AutoscaleEnv",
    "servegym/ExpertPlacement-v0": "envs.expert_placement.env:ExpertPlacementEnv",
    "servegym/Routing-v0": "envs.routing.env:RoutingEnv",
    "servegym/PrefixEviction-v0": "envs.prefix_eviction.env:PrefixEvictionEnv",
}
VEC_ENVS = {
    "servegym/KVAdmission-v0": "envs.kv_admission.env:KVAdmissionVecEnv",
    "servegym/Autoscale-v0": "envs.autoscale.env:AutoscaleVecEnv",
    "servegym/ExpertPlacement-v0": "envs.expert_placement.env:ExpertPlacementVecEnv",
    "servegym/Routing-v0": "envs.routing.env:RoutingVecEnv",
    "servegym/PrefixEviction-v0": "envs.prefix_eviction.env:PrefixEvictionVecEnv",
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
