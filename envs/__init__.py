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

from envs.ids import (
    ENVS,
    PACKAGES,
    PARALLEL_ENVS,
    VEC_ENVS,
    VECTOR_ENVS,
    UnknownEnvironment,
    resolve_env_id,
    resolve_parallel_id,
)

# Where each observation layout and its version (OBS_VERSION, OBS_VERSIONS: what each version means) are
# defined: next to the feature names. A PettingZoo role that sees a single-agent environment's observation
# (MultiCluster-v0's router and admission seats) has that environment's layout and version.
_LAYOUTS = {i: f"envs.{p}.kernels" for i, (p, _) in PACKAGES.items()}
_LAYOUTS["servegym/ExpertPlacementParallel-v0"] = "envs.expert_placement.parallel"
_LAYOUTS["servegym/MultiCluster-v0:autoscaler"] = "envs.multi.kernels"
_ROLE_LAYOUTS = {("servegym/MultiCluster-v0", "router"): "servegym/Routing-v0",
                 ("servegym/MultiCluster-v0", "admission"): "servegym/KVAdmission-v0",
                 ("servegym/MultiCluster-v0", "autoscaler"): "servegym/MultiCluster-v0:autoscaler"}


def observation_roles(env_id: str) -> list[str]:
    """The roles (seats) of the PettingZoo env ``env_id`` whose observation layouts differ, sorted (MultiCluster-v0:
    admission, autoscaler, router); empty for an env with one layout."""
    return sorted(r for e, r in _ROLE_LAYOUTS if e == env_id)


def observation_layout(env_id: str, role: str | None = None) -> str:
    """The id of the observation layout that ``env_id`` (a role ``role`` of a PettingZoo env with
    several, e.g. MultiCluster-v0's ``router``) emits: ``env_id`` itself, or the single-agent
    environment whose observation the role sees. ``KeyError`` (one line) for an unknown env or role."""
    if (env_id, role) in _ROLE_LAYOUTS:
        return _ROLE_LAYOUTS[(env_id, role)]
    roles = observation_roles(env_id)
    if roles:
        raise KeyError(f"{env_id}: role {role!r} unknown; its roles: {', '.join(roles)}")
    if env_id not in _LAYOUTS:
        raise KeyError(f"unknown environment {env_id!r}; known: {', '.join(i for i in _LAYOUTS if ':' not in i)}, "
                       "servegym/MultiCluster-v0")
    return env_id


def observation_version(env_id: str, role: str | None = None) -> tuple[int, dict[int, str]]:
    """``(version, {version: meaning})`` of the observation ``env_id`` (role ``role``, see
    :func:`observation_layout`) builds now: the ``OBS_VERSION`` and ``OBS_VERSIONS`` beside its
    feature names. A checkpoint trained on another version misreads the features (agents.obs_version
    refuses it). ``KeyError`` for an unknown env or role."""
    return layout_version(observation_layout(env_id, role))


def layout_version(layout: str) -> tuple[int, dict[int, str]]:
    """``(version, {version: meaning})`` of the observation layout ``layout`` (an id that
    :func:`observation_layout` returns); ``KeyError`` for an unknown one."""
    import importlib

    if layout not in _LAYOUTS:
        raise KeyError(f"unknown observation layout {layout!r}; known: {', '.join(_LAYOUTS)}")
    mod = importlib.import_module(_LAYOUTS[layout])
    return int(mod.OBS_VERSION), dict(mod.OBS_VERSIONS)


for _id, _entry in ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry, vector_entry_point=VECTOR_ENVS[_id])


def lazy_exports(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` (PEP 562) for an environment package: ``exports`` maps each public name
    to the submodule that defines it (``{"KVAdmissionVecEnv": "env"}``), imported on first use, and
    any submodule name imports that submodule. Importing ``envs.<package>.kernels`` then runs the
    package's ``__init__`` without its ``env`` module, so reading an observation version
    (:func:`layout_version`, e.g. for an ONNX file) imports neither SB3 nor torch."""
    import importlib

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


def _load(entry: str):
    import importlib

    module, attr = entry.split(":")
    return getattr(importlib.import_module(module), attr)


def make_parallel(env_id: str, **kwargs):
    """The PettingZoo ``ParallelEnv`` of ``env_id`` (see ``PARALLEL_ENVS``): its full id or a short form
    (``MultiCluster``, ``multi_cluster``, ``ExpertPlacementParallel``; ``envs.ids.resolve_parallel_id``). Raises
    ``envs.ids.UnknownEnvironment`` (a ``KeyError``) naming the PettingZoo environments for an unknown name."""
    return _load(PARALLEL_ENVS[resolve_parallel_id(env_id)])(**kwargs)


def make_vec(env_id: str, num_envs: int, seed: int | None = None, **kwargs):
    """The native batched env (an SB3 VecEnv) of ``env_id``: any name the command lines' ``--env`` takes, the full
    id, the id without the namespace, the short or the package name, case-insensitively (``servegym/KVAdmission-v0``,
    ``KVAdmission``, ``kv_admission``; ``envs.options.resolve_env_id``). Raises ``envs.options.UnknownEnvironment``
    (a ``KeyError`` and a ``ValueError``) with ``--env``'s one-line message for an unknown name, and for a
    multi-agent environment (``envs.make_parallel`` builds those); what the constructor raises for a bad config."""
    resolved = resolve_env_id(env_id)
    if resolved not in VEC_ENVS:
        raise UnknownEnvironment(f"{env_id!r} is the multi-agent environment {resolved}: envs.make_parallel builds "
                                 f"it; envs.make_vec builds {', '.join(VEC_ENVS)}")
    return _load(VEC_ENVS[resolved])(num_envs, seed=seed, **kwargs)
