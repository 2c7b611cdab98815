"""The Policy protocol, the uniform random policy, and the registry heuristics add themselves to.

A policy maps a batch of observations and action masks to a batch of actions (``act``). Each
module of ``agents.heuristics`` registers its environment's heuristics here by ``--policy`` name;
``agents.policy.make_policy`` resolves names against this registry and the zoo.
"""

from __future__ import annotations

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


def register_heuristics(env_id: str, factories: dict[str, Callable[..., Policy]]) -> None:
    HEURISTICS.setdefault(env_id, {}).update(factories)
