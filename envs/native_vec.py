"""The SB3 ``VecEnv`` plumbing every native batched environment shares.

One object steps the whole batch, so attribute and method calls go to it once per index; a
subclass keeps its action masks in ``self._mask`` ([E, n_actions] bool).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv


class NativeVecEnv(VecEnv):
    _mask: np.ndarray

    def close(self) -> None:
        pass

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            return list(self._mask[idx])
        return [getattr(self, method_name)(*args, **kwargs) for _ in idx]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
