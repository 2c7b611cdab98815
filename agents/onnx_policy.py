"""A policy exported by ``agents.export``, run with onnxruntime and numpy only (no torch).

This is what a serving engine loads: importing this module pulls in neither torch nor SB3.
``make_policy`` returns it for a ``--policy`` path ending in ``.onnx``, so ``agents.evaluate``
and the leaderboard score it like any policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


def session_options(threads: int = 1) -> ort.SessionOptions:
    """One thread, sequential execution: a decision of a few small GEMMs is fastest on the
    calling thread (a thread pool's wake-up costs more than the work)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


class OnnxPolicy:
    """Deterministic actions of an exported policy; ``metadata`` holds what export recorded."""

    row_independent = True  # each row's action from that row's observation and mask (policy_base.Policy)

    def __init__(self, path: str | Path, env: Any | None = None, env_id: str | None = None,
                 threads: int = 1):
        self.path = Path(path)
        self.name = str(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            from agents.policy_base import PolicyFileError

            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PolicyFileError(f"{self.path}: not an ONNX model ({first})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["obs", "action_mask"]:
            from agents.policy_base import PolicyFileError

            raise PolicyFileError(f"{self.path}: inputs {inputs}, expected ['obs', 'action_mask'] "
                             "(a model written by agents.export)")
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.env_id = self.metadata.get("env_id")
        from agents import obs_version  # its observation version against this servegym's (agents.obs_version)

        self.observation = obs_version.from_onnx_metadata(self.path, self.metadata)
        obs_version.check(self.path, self.observation)
        if env_id is not None and self.env_id != env_id:
            from agents.policy_base import PolicyMismatch  # a ValueError the CLIs end in one line

            raise PolicyMismatch(f"{self.path}: exported for {self.env_id}, not {env_id}")
        if env_id is not None:  # metadata naming another environment's observation layout (an edited file)
            obs_version.check_env(self.path, self.observation, env_id)
        self.n_obs = int(self.session.get_inputs()[0].shape[1])
        self.n_scores = int(self.session.get_inputs()[1].shape[1])
        if env is not None and tuple(env.observation_space.shape) != (self.n_obs,):
            from agents.policy_base import PolicyMismatch

            raise PolicyMismatch(f"{self.path}: takes observations of shape ({self.n_obs},), the "
                             f"environment emits {env.observation_space.shape} (different --env-kwargs?)")
        self._all_legal: dict[int, np.ndarray] = {}

    @property
    def observation_features(self) -> list[str]:
        return json.loads(self.metadata.get("observation", "{}")).get("features", [])

    @property
    def action_meanings(self) -> list[str]:
        return json.loads(self.metadata.get("action", "{}")).get("meanings", [])

    def _feed(self, obs: np.ndarray, action_mask: np.ndarray | None) -> dict[str, np.ndarray]:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.n_obs:
            raise ValueError(f"obs: expected shape [batch, {self.n_obs}], got {obs.shape}")
        B = obs.shape[0]
        if action_mask is None:
            mask = self._all_legal.get(B)
            if mask is None:
                mask = self._all_legal[B] = np.ones((B, self.n_scores), np.bool_)
        else:
            mask = np.ascontiguousarray(action_mask, dtype=np.bool_)
            if mask.shape != (B, self.n_scores):
                raise ValueError(f"action_mask: expected shape ({B}, {self.n_scores}), got {mask.shape}")
        return {"obs": obs, "action_mask": mask}

    def run(self, obs: np.ndarray, action_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions and unmasked scores (logits or Q-values) for a batch."""
        action, scores = self.session.run(None, self._feed(obs, action_mask))
        return action, scores

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        return self.session.run(["action"], self._feed(obs, action_mask))[0]
