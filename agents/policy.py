"""One Policy protocol for heuristics, oracles, SB3 checkpoints and ONNX files.

A policy maps a batch of observations and action masks to a batch of actions; the evaluator
cannot tell kinds apart. ``make_policy`` resolves what ``--policy`` names: a registered
heuristic of the environment, ``random``, ``zoo`` (the environment's reference learned agent)
or a path to an SB3 checkpoint (``.zip``; an HPA-residual one of ``agents.hpa_residual`` plays through
its base HPA) or an ONNX export (``.onnx``, see ``agents.export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.policy_base import HEURISTICS, Policy, RandomPolicy, Sharded, first_legal, register_heuristics
from agents.policy_base import shard_spec as _shard_spec
from agents.zoo import ZOO

__all__ = ["HEURISTICS", "Policy", "RandomPolicy", "Sharded", "ZOO", "first_legal", "heuristic_names",
           "make_policy", "register_heuristics", "shard_spec"]


def _load_registries() -> None:
    import agents.heuristics  # noqa: F401  (registers every environment's heuristics)


def heuristic_names(env_id: str) -> list[str]:
    _load_registries()
    return list(HEURISTICS.get(env_id, {}))


def shard_spec(env_id: str, spec: str) -> tuple[str, int] | None:
    """(shard group, shards per episode) of ``spec`` when it is a ``Sharded`` heuristic of
    ``env_id`` (``agents.policy_base.shard_spec``), else None."""
    _load_registries()
    return _shard_spec(env_id, spec)


def make_policy(spec: str, env: Any, env_id: str, seed: int = 0) -> Policy:
    """Resolve a ``--policy`` value for ``env`` (the VecEnv the policy will act in)."""
    _load_registries()
    if spec == "random":
        return RandomPolicy(env, seed)
    table = HEURISTICS.get(env_id, {})
    if spec in table:
        return table[spec](env, seed)
    if spec == "zoo":
        if env_id not in ZOO:
            raise KeyError(f"no reference learned agent ('zoo') for {env_id} yet")
        spec = str(ZOO[env_id])
    path = Path(spec)
    if path.suffix == ".zip" and path.exists():
        from agents.hpa_residual import HPAResidualPolicy, read_spec
        from agents.sb3_policy import SB3Policy

        if read_spec(path) is not None:  # an offset from HPA's fleet (agents.hpa_residual)
            return HPAResidualPolicy(path, env, env_id)
        return SB3Policy(path, env, env_id)
    if path.suffix == ".onnx" and path.exists():
        from agents.onnx_policy import OnnxPolicy

        return OnnxPolicy(path, env, env_id)
    known = ", ".join(["random", "zoo", *table])
    raise ValueError(
        f"--policy {spec!r}: not a policy of {env_id} ({known}) nor an existing SB3 checkpoint (.zip) or ONNX file (.onnx)"
    )
