"""The environments' ids and the names that denote them: one table per kind, read by ``envs`` (registration,
``make_vec``, ``make_parallel``) and by ``envs.options`` (every command's ``--env``); imports nothing of servegym,
so both can use it without importing each other.

- ``VEC_ENVS`` / ``ENVS`` / ``VECTOR_ENVS``: each single-agent id's native SB3 VecEnv, Gymnasium env and
  Gymnasium vector facade (``"module:class"``); ``PARALLEL_ENVS``: the PettingZoo factories;
  ``MULTI_AGENT``: the multi-agent environments' batched cores and configs.
- ``resolve_env_id(name)``: an environment by its full id (``servegym/KVAdmission-v0``), its id without the
  namespace (``KVAdmission-v0``), its short name (``KVAdmission``), its package name (``kv_admission``) or the
  first part of its scenario ids (``multi_cluster``), case-insensitively; ``UnknownEnvironment`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# Environment id -> (package, class prefix): envs.<package>.env holds <prefix>Env (the
# Gymnasium view, E = 1), <prefix>VecEnv (the native SB3 batch) and <prefix>VectorEnv (the
# Gymnasium vector facade, gymnasium.make_vec's vector_entry_point).
PACKAGES = {
    "servegym/KVAdmission-v0": ("kv_admission", "KVAdmission"),
    "servegym/Autoscale-v0": ("autoscale", "Autoscale"),
    "servegym/ExpertPlacement-v0": ("expert_placement", "ExpertPlacement"),
    "servegym/Routing-v0": ("routing", "Routing"),
    "servegym/PrefixEviction-v0": ("prefix_eviction", "PrefixEviction"),
    "servegym/Disaggregation-v0": ("disaggregation", "Disaggregation"),
}
ENVS = {i: f"envs.{p}.env:{c}Env" for i, (p, c) in PACKAGES.items()}
VEC_ENVS = {i: f"envs.{p}.env:{c}VecEnv" for i, (p, c) in PACKAGES.items()}
VECTOR_ENVS = {i: f"envs.{p}.env:{c}VectorEnv" for i, (p, c) in PACKAGES.items()}
# PettingZoo environments: id -> module-level ``parallel_env`` factory.
PARALLEL_ENVS = {
    "servegym/MultiCluster-v0": "envs.multi.env:parallel_env",
    "servegym/ExpertPlacementParallel-v0": "envs.expert_placement.parallel:parallel_env",
}


# Multi-agent environments (PettingZoo): id -> (batched core "module:class", its config dataclass).
# Their agents' policies are teams (one policy per role); ``agents.team`` evaluates them.
MULTI_AGENT: dict[str, tuple[str, str]] = {
    "servegym/MultiCluster-v0": ("envs.multi.env:MultiCluster", "envs.multi.env:MultiConfig"),
}


def _vec_entries() -> dict[str, str]:
    return {**VEC_ENVS, **{k: v[0] for k, v in MULTI_AGENT.items()}}


def env_ids() -> list[str]:
    """Every environment id: the single-agent ones (``envs.VEC_ENVS``) in registration order,
    then the multi-agent ones (``MULTI_AGENT``)."""
    return list(_vec_entries())


def single_agent_ids() -> list[str]:
    """The ids of ``envs.VEC_ENVS`` (what ``train.py`` and ``agents.export`` take)."""
    return [e for e in env_ids() if e not in MULTI_AGENT]


def is_multi_agent(env_id: str) -> bool:
    return env_id in MULTI_AGENT


def short_name(env_id: str) -> str:
    """``servegym/KVAdmission-v0`` -> ``KVAdmission``."""
    return env_id.split("/")[-1].rsplit("-v", 1)[0]


def package_name(env_id: str) -> str:
    """``servegym/KVAdmission-v0`` -> ``kv_admission``: the package (or module) under ``envs``
    that holds the environment."""
    module = _vec_entries()[env_id].split(":")[0]
    return module.split(".")[1]


def snake_name(env_id: str) -> str:
    """``servegym/MultiCluster-v0`` -> ``multi_cluster``: the short name in snake case, as the
    leaderboard's scenario ids begin (``multi_cluster/...``; the package name for the others)."""
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", short_name(env_id)).lower()


def name_forms(env_id: str) -> tuple[str, ...]:
    """Every name that resolves to ``env_id``: the id, the id without its namespace, the short
    name, the package name and the snake-case short name (a scenario id's first part)."""
    return (env_id, env_id.split("/")[-1], short_name(env_id), package_name(env_id), snake_name(env_id))


class UnknownEnvironment(ValueError, KeyError):
    """A name that denotes no environment (or none of the kind asked for): a ``ValueError`` for the command line's
    checks, a ``KeyError`` as ``envs.make_vec`` raised for an unknown id, printed as its one-line message (a plain
    ``KeyError`` prints the repr of its argument)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _match(name: str, ids: Iterable[str], forms: Callable[[str], Iterable[str]]) -> str | None:
    """The id of ``ids`` one of whose ``forms(id)`` is ``name`` (case-insensitive, spaces stripped), else None."""
    wanted = str(name).strip().lower()
    return next((i for i in ids if wanted in {f.lower() for f in forms(i)}), None)


def resolve_env_id(name: str) -> str:
    """The registered id that ``name`` denotes (any of ``name_forms``, case-insensitive).

    Raises :class:`UnknownEnvironment` (a ``ValueError``) ``"unknown environment ...; known: ..."`` listing the
    short names.
    """
    found = _match(name, env_ids(), name_forms)
    if found is None:
        known = ", ".join(f"{short_name(e)} ({e}, {package_name(e)})" for e in env_ids())
        raise UnknownEnvironment(f"unknown environment {name!r}; known: {known}")
    return found


def _parallel_forms(env_id: str) -> tuple[str, ...]:
    """``name_forms`` of a PettingZoo id that is also a batched environment (MultiCluster); the others have no
    package of their own (ExpertPlacementParallel lives in expert_placement): no package name."""
    if env_id in _vec_entries():
        return name_forms(env_id)
    return (env_id, env_id.split("/")[-1], short_name(env_id), snake_name(env_id))


def resolve_parallel_id(name: str) -> str:
    """The PettingZoo environment (``PARALLEL_ENVS``) that ``name`` denotes: its full id, the id without the
    namespace, its short name or its snake-case short name (and MultiCluster's package name, ``multi``),
    case-insensitively. Raises :class:`UnknownEnvironment` listing them."""
    found = _match(name, PARALLEL_ENVS, _parallel_forms)
    if found is None:
        known = ", ".join(f"{short_name(e)} ({e})" for e in PARALLEL_ENVS)
        raise UnknownEnvironment(f"unknown PettingZoo environment {name!r}; known: {known}")
    return found
