"""One Policy protocol for heuristics, oracles, SB3 checkpoints and ONNX files.

A policy maps a batch of observations and action masks to a batch of actions; the evaluator
cannot tell kinds apart. ``make_policy`` resolves what ``--policy`` names: a registered
heuristic of the environment, ``random``, ``zoo`` (the environment's reference learned agent)
or a path to an SB3 checkpoint (``.zip``) or an ONNX export (``.onnx``, see ``agents.export``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    name: str

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        """Actions for a batch: ``obs`` [E, ...], ``action_mask`` [E, n_actions] or None."""
        ...


class RandomPolicy:
    """Uniform over the legal actions (the naive reference of every environment)."""

    name = "random"

    def __init__(self, env: Any, seed: int = 0):
        self.n = int(env.action_space.n)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        E = obs.shape[0]
        if action_mask is None:
            return self.rng.integers(self.n, size=E)
        # Gumbel-free uniform choice among legal actions: random keys, masked argmax.
        keys = self.rng.random((E, self.n))
        keys[~action_mask] = -1.0
        return keys.argmax(axis=1)


def first_legal(actions: np.ndarray, action_mask: np.ndarray | None, fallback: np.ndarray) -> np.ndarray:
    """``actions`` where legal, else ``fallback`` (heuristics state their fallback explicitly)."""
    if action_mask is None:
        return actions
    ok = action_mask[np.arange(len(actions)), actions]
    return np.where(ok, actions, fallback)


# Environment id -> {policy name -> factory(env, seed) -> Policy}
HEURISTICS: dict[str, dict[str, Callable[..., Policy]]] = {}
ZOO: dict[str, Path] = {}


def register_heuristics(env_id: str, factories: dict[str, Callable[..., Policy]]) -> None:
    HEURISTICS.setdefault(env_id, {}).update(factories)


def _load_registries() -> None:
    import agents.heuristics  # noqa: F401  (registers every environment's heuristics)
    import agents.zoo  # noqa: F401


def heuristic_names(env_id: str) -> list[str]:
    _load_registries()
    return list(HEURISTICS.get(env_id, {}))


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
        from agents.sb3_policy import SB3Policy

        return SB3Policy(path, env)
    if path.suffix == ".onnx" and path.exists():
        from agents.onnx_policy import OnnxPolicy

        return OnnxPolicy(path, env, env_id)
    known = ", ".join(["random", "zoo", *table])
    raise ValueError(
        f"--policy {spec!r}: not a policy of {env_id} ({known}) nor an existing SB3 checkpoint (.zip) or ONNX file (.onnx)"
    )
