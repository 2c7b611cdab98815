"""The Gymnasium ``VectorEnv`` facade over a native batch: what ``gymnasium.make_vec(id, n)`` returns.

Each registered id names a subclass of :class:`NativeVectorEnv` as its ``vector_entry_point``
(Gymnasium's own convention, e.g. ``CartPoleVectorEnv``), so ``gymnasium.make_vec`` (and
``vectorization_mode="vector_entry_point"``) build the environment's native batch, not E single
envs. The facade steps that batch once per call and follows Gymnasium's vector API:

- ``reset(seed=s)``: env e is seeded ``s + e`` (a list gives each env its own seed); a seed is None or an
  integer >= 0 (anything else: one ``ValueError`` naming ``seed``);
  ``options`` name the episode (``{"window": w, knob: v}``, see ``NativeVecEnv``);
- ``step(actions [E])`` returns ``(obs [E, F] float32, rewards [E] float64, terminations [E],
  truncations [E], infos)``; autoreset in the same step (``AutoresetMode.SAME_STEP``): an env
  whose episode ended returns its next episode's first observation, and ``infos["final_obs"]``
  / ``infos["final_info"]`` (with masks ``_final_obs`` / ``_final_info``) hold the ended
  episode's last observation and info (``episode``, ``metrics`` ...), as ``SyncVectorEnv`` does;
- infos are a dict of arrays (Gymnasium's ``_add_info``), not a list of dicts;
- ``max_episode_steps`` (``gymnasium.make_vec(id, n, max_episode_steps=k)``, as Gymnasium's own vector entry
  points take it; it was an unknown config field): an episode that reaches k steps is truncated
  (``truncations[e]`` True, also where it terminated on its k-th step, as ``TimeLimit`` does) and the env
  starts its next episode in the same step (``final_info`` ``{}`` for a cut episode: it has no metrics); the
  same observations, rewards and flags as ``SyncVectorEnv`` over ``gymnasium.make(id, max_episode_steps=k)``
  with same-step autoreset. None (default): no limit. An integer >= 1 or a ``ValueError`` naming it.

The native SB3 VecEnv stays reachable as ``.vec`` (action masks: ``action_masks()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.native_vec import NativeVecEnv, check_seed, options_dict
from traces.checks import is_integer


class NativeVectorEnv(VectorEnv):
    """``gymnasium.vector.VectorEnv`` over ``vec_class(num_envs, **kwargs)`` (see the module)."""

    vec_class: ClassVar[type[NativeVecEnv]]
    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any):
        if max_episode_steps is not None and (not is_integer(max_episode_steps) or max_episode_steps < 1):
            raise ValueError(f"{self.vec_class.env_name}: max_episode_steps must be None or an integer >= 1, got "
                             f"{max_episode_steps!r}")
        self.vec = self.vec_class(num_envs, **kwargs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self._elapsed = np.zeros(num_envs, np.int64)
        self.num_envs = num_envs
        self.single_observation_space = self.vec.observation_space
        self.single_action_space = self.vec.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self.config = self.vec.config

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str) and np.ndim(seed) == 1:
                seeds = [check_seed(s, self.vec.env_name, f"seed[{e}]") for e, s in enumerate(seed)]
                if len(seeds) != self.num_envs:
                    raise ValueError(f"{self.vec.env_name}: reset got {len(seeds)} seeds for {self.num_envs} envs")
                self.vec.seed_each(seeds)
            else:
                self.vec.seed(check_seed(seed, self.vec.env_name, more=f", or a list of {self.num_envs} such"))
        if options is not None:
            self.vec.set_options(options_dict(options, self.vec.env_name))
        obs = self.vec.reset()
        self._elapsed[:] = 0
        return obs, {}

    def step(self, actions: Any):
        obs, rewards, _, infos = self.vec.step(np.asarray(actions))
        terminated, truncated = self.vec.last_terminated.copy(), self.vec.last_truncated.copy()
        out: dict[str, Any] = {}
        for e in np.flatnonzero(terminated | truncated):
            info = dict(infos[e])
            final_obs = info.pop("terminal_observation")
            info.pop("TimeLimit.truncated", None)
            out = self._add_info(out, {"final_obs": final_obs, "final_info": info}, int(e))
        if self.max_episode_steps is not None:
            self._elapsed += 1
            limit = self._elapsed >= self.max_episode_steps
            cut = np.flatnonzero(limit & ~(terminated | truncated))  # ended by the limit alone: restart them here
            for e in cut:
                out = self._add_info(out, {"final_obs": obs[e].copy(), "final_info": {}}, int(e))
            if cut.size:
                obs[cut] = self.vec.restart(cut)
            truncated |= limit
            self._elapsed[terminated | truncated] = 0
        return obs, rewards.astype(np.float64), terminated, truncated, out

    def action_masks(self) -> np.ndarray:
        """[E, n_actions] bool: the legal actions of every env."""
        return self.vec.action_masks()

    def close_extras(self, **kwargs: Any) -> None:
        self.vec.close()
