"""The Policy protocol, the uniform random policy, and the registry heuristics add themselves to.

A policy maps a batch of observations and action masks to a batch of actions (``act``). Each
module of ``agents.heuristics`` registers its environment's heuristics here by ``--policy`` name;
``agents.policy.make_policy`` resolves names against this registry and the zoo.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


class PolicyMismatch(ValueError):
    """A policy that cannot play the environment as configured: a learned policy (SB3 checkpoint or
    ONNX file) whose observation or action layout is not the environment's (e.g. trained on 8
    instances, asked to play 4; the message names the file and both layouts), or a heuristic whose
    design needs what the configuration lacks (Splitwise's three pools on 2 instances). The CLIs
    report it as a usage error."""


class PolicyFileError(PolicyMismatch):
    """A policy file that cannot be read as one: not a zip, no SB3 ``data`` member, a truncated or
    corrupt weight file, not an ONNX model. The message starts with the file and says why (the first
    line of the reader's own error); the CLIs report it as a usage error, as any PolicyMismatch."""


def read_zip_json(path: str | Path, member: str, error: type[Exception], what: str | None = None) -> Any:
    """The JSON value of ``member`` inside the zip ``path`` (an SB3 checkpoint's record), or None where it has
    no such member; ``error("PATH: unreadable WHAT (why)")`` (one line; ``what`` defaults to ``member``) for a
    file that is no readable zip or a member that is not UTF-8 JSON. The record's own keys are the caller's
    check (``agents.obs_version.read_zip``, ``agents.hpa_residual.read_spec``)."""
    try:
        with zipfile.ZipFile(path) as z:
            if member not in z.namelist():
                return None
            return json.loads(z.read(member).decode())
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: unreadable {what or member} ({err})") from None


@runtime_checkable
class Policy(Protocol):
    """``name`` and ``act``. A policy may also set ``row_independent = True`` when env e's action
    depends only on env e's observation, mask and its own history (no generator or state shared
    across rows, no read of other envs): the evaluator then plays every sweep value in one batch
    (``agents.evaluate``); without it, one batch per value."""

    name: str

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        """Actions for a batch: ``obs`` [E, ...], ``action_mask`` [E, n_actions] or None."""
        ...


@runtime_checkable
class Sharded(Protocol):
    """A policy whose costly part is independent, deterministic work that a scheduler may run
    beforehand elsewhere (a clairvoyant oracle's replays of its episodes): ``shards_per_episode``
    shards per episode of the batch, shared by every policy of the same ``shard_group`` on the same
    scenario. ``run_shard(i)`` (after the env's ``reset()``) computes shard i and returns a
    picklable result; ``preload(results)`` hands them to the policy before its episodes start. A
    policy given its shards plays exactly as one that computes everything itself."""

    shard_group: str
    shards_per_episode: int

    def run_shard(self, index: int) -> Any: ...

    def preload(self, results: list[Any]) -> None: ...


class RandomPolicy:
    """Uniform over the legal actions (the naive reference of every environment)."""

    name = "random"

    def __init__(self, env: Any, seed: int = 0):
        nvec = getattr(env.action_space, "nvec", None)  # MultiDiscrete: one choice per component
        self.nvec = None if nvec is None else [int(k) for k in np.asarray(nvec).reshape(-1)]
        self.n = int(env.action_space.n) if self.nvec is None else sum(self.nvec)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        E = obs.shape[0]
        if action_mask is None and self.nvec is None:
            return self.rng.integers(self.n, size=E)
        # Gumbel-free uniform choice among legal actions: random keys, masked argmax (per
        # component for MultiDiscrete, whose mask is the components' masks concatenated).
        keys = self.rng.random((E, self.n))
        if action_mask is not None:
            keys[~action_mask] = -1.0
        if self.nvec is None:
            return keys.argmax(axis=1)
        cuts = np.cumsum([0] + self.nvec)
        return np.stack([keys[:, a:b].argmax(axis=1) for a, b in zip(cuts[:-1], cuts[1:])], axis=1)


def first_legal(actions: np.ndarray, action_mask: np.ndarray | None, fallback: np.ndarray) -> np.ndarray:
    """``actions`` where legal, else ``fallback`` (heuristics state their fallback explicitly)."""
    if action_mask is None:
        return actions
    ok = action_mask[np.arange(len(actions)), actions]
    return np.where(ok, actions, fallback)


# Environment id -> {policy name -> factory(env, seed) -> Policy}
HEURISTICS: dict[str, dict[str, Callable[..., Policy]]] = {}


def shard_spec(env_id: str, spec: str) -> tuple[str, int] | None:
    """(shard group, shards per episode) of the registered heuristic ``spec`` of ``env_id`` when
    it is ``Sharded``, else None (random, files, the zoo and unsharded heuristics)."""
    factory = HEURISTICS.get(env_id, {}).get(spec)
    group, per_episode = getattr(factory, "shard_group", None), getattr(factory, "shards_per_episode", 0)
    return (group, int(per_episode)) if group and per_episode > 0 else None


def register_heuristics(env_id: str, factories: dict[str, Callable[..., Policy]]) -> None:
    HEURISTICS.setdefault(env_id, {}).update(factories)
