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
    """Deterministic actions of an exported policy; ``metadata`` holds what export recorded.

    ``env_id`` (an id, short or package name) refuses a file exported for another environment
    (``PolicyMismatch``); ``env`` one whose observation shape is not the env's. ``act``/``run``
    check their inputs (``ValueError`` naming the input, row and column) before onnxruntime runs."""

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
        if env_id is not None and self.env_id != env_id:  # a short or package name ("KVAdmission") is that id
            from envs.options import resolve_env_id  # only here: importing this module imports no torch

            try:
                env_id = resolve_env_id(env_id)
            except ValueError:
                pass  # not a servegym name: refused just below as any other id
        if env_id is not None and self.env_id != env_id:
            from agents.policy_base import PolicyMismatch  # a ValueError the CLIs end in one line

            if self.env_id is None:  # was 'exported for None'
                raise PolicyMismatch(f"{self.path}: records no env_id in its metadata (not written by "
                                     f"agents.export), so it cannot be checked against {env_id}")
            raise PolicyMismatch(f"{self.path}: exported for {self.env_id}, not {env_id}")
        if env_id is not None:  # metadata naming another environment's observation layout (an edited file)
            obs_version.check_env(self.path, self.observation, env_id)
        shapes = [i.shape for i in self.session.get_inputs()] + [self.session.get_outputs()[0].shape]
        if not (len(shapes[0]) == len(shapes[1]) == 2 and len(shapes[2]) in (1, 2)
                and all(isinstance(s[1], int) and s[1] >= 1 for s in shapes if len(s) == 2)):
            from agents.policy_base import PolicyFileError  # was int()'s ValueError or an IndexError

            raise PolicyFileError(f"{self.path}: inputs of shapes {shapes[0]}, {shapes[1]} and an action of "
                                  f"shape {shapes[2]}, expected [batch, n_obs], [batch, n_actions] and [batch] or "
                                  "[batch, D] with fixed sizes (a model written by agents.export)")
        self.n_obs = int(shapes[0][1])
        self.n_scores = int(shapes[1][1])
        if env is not None and tuple(env.observation_space.shape) != (self.n_obs,):
            from agents.policy_base import PolicyMismatch

            raise PolicyMismatch(f"{self.path}: takes observations of shape ({self.n_obs},), the "
                             f"environment emits {env.observation_space.shape} (different --env-kwargs?)")
        self._all_legal: dict[int, np.ndarray] = {}
        # The mask's columns per action component (MultiDiscrete masks side by side). A file without the
        # record (agents.export writes it) with a [batch, D] action: one block, each row checked as a whole.
        action_dims = self.session.get_outputs()[0].shape
        self._action_shape = tuple(int(d) for d in action_dims[1:])  # () Discrete, (D,) MultiDiscrete
        try:
            segments = json.loads(self.metadata.get("action", "{}")).get("segments") or [self.n_scores]
        except (json.JSONDecodeError, AttributeError):
            segments = None
        if not (isinstance(segments, list) and all(isinstance(n, int) and n >= 1 for n in segments)
                and sum(segments) == self.n_scores and len(segments) in (1, *self._action_shape)):
            from agents.policy_base import PolicyFileError

            raise PolicyFileError(f"{self.path}: metadata 'action' segments {segments!r} do not match its "
                                  f"{self.n_scores} scores and action shape {self._action_shape} (an edited file?)")
        self._cuts = [int(c) for c in np.cumsum([0, *segments])]

    @property
    def observation_features(self) -> list[str]:
        return json.loads(self.metadata.get("observation", "{}")).get("features", [])

    @property
    def action_meanings(self) -> list[str]:
        return json.loads(self.metadata.get("action", "{}")).get("meanings", [])

    def _feed(self, obs: np.ndarray, action_mask: np.ndarray | None) -> dict[str, np.ndarray]:
        """The model's inputs; ``ValueError`` naming the input, and the row and column (feature or action)
        where a value is wrong: a shape other than [B, n_obs] / [B, n_scores], an observation that is not
        a real number or not finite (after the cast to float32), a mask value other than a boolean or 0/1,
        a mask row (a MultiDiscrete component's part of it) with no legal action. Each of these was a
        silent action before: NaN observations and all-False masks gave action 0, a mask of 0.5 or NaN
        counted as legal, complex observations lost their imaginary part."""
        obs = np.asarray(obs)
        if obs.dtype.kind not in "biuf":
            raise ValueError(f"obs: dtype {obs.dtype}, expected real numbers (float32)")
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.n_obs:
            raise ValueError(f"obs: expected shape [batch, {self.n_obs}], got {obs.shape}")
        if not np.isfinite(obs).all():
            b, i = (int(x) for x in np.argwhere(~np.isfinite(obs))[0])
            names = self.observation_features
            name = f" ({names[i]})" if i < len(names) else ""
            raise ValueError(f"obs[{b}, {i}]{name} is {obs[b, i]} (as float32): observations must be finite")
        B = obs.shape[0]
        if action_mask is None:
            mask = self._all_legal.get(B)
            if mask is None:
                mask = self._all_legal[B] = np.ones((B, self.n_scores), np.bool_)
        else:
            mask = np.asarray(action_mask)
            if mask.shape != (B, self.n_scores):
                raise ValueError(f"action_mask: expected shape ({B}, {self.n_scores}), got {mask.shape}")
            if mask.dtype != np.bool_:
                bad = ~((mask == 0) | (mask == 1)) if mask.dtype.kind in "biuf" else np.ones(mask.shape, bool)
                if bad.any():
                    b, i = (int(x) for x in np.argwhere(bad)[0])
                    raise ValueError(f"action_mask[{b}, {i}] is {mask[b, i]!r} ({mask.dtype}): expected "
                                     "booleans or 0/1 (False/0 = illegal)")
                mask = mask.astype(np.bool_)
            mask = np.ascontiguousarray(mask)
            if len(self._cuts) == 2:  # Discrete (or components unrecorded): one check of the whole row
                if not mask.any(axis=1).all():
                    raise ValueError(f"action_mask row {int(np.argmin(mask.any(axis=1)))}: no legal action; "
                                     "a row needs at least one True")
            else:
                for d, (lo, hi) in enumerate(zip(self._cuts[:-1], self._cuts[1:])):
                    legal = mask[:, lo:hi].any(axis=1)
                    if not legal.all():
                        raise ValueError(f"action_mask row {int(np.argmin(legal))}: no legal action in action "
                                         f"component {d} (columns {lo}..{hi - 1}); each component needs a True")
        return {"obs": obs, "action_mask": mask}

    def run(self, obs: np.ndarray, action_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions [B] (int64; [B, D] for a MultiDiscrete action of D components) and unmasked scores
        [B, n_scores] (float32 logits or Q-values) for ``obs`` [B, n_obs] and ``action_mask`` [B, n_scores]
        (bool or 0/1; None = every action legal). Raises ``ValueError`` for bad inputs (see ``_feed``);
        an empty batch (B = 0) gives empty arrays."""
        feed = self._feed(obs, action_mask)
        if feed["obs"].shape[0] == 0:  # onnxruntime's Reshape fails on a batch of 0
            return np.zeros((0, *self._action_shape), np.int64), np.zeros((0, self.n_scores), np.float32)
        action, scores = self.session.run(None, feed)
        return action, scores

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        """Actions [B] or [B, D] (see ``run``)."""
        feed = self._feed(obs, action_mask)
        if feed["obs"].shape[0] == 0:
            return np.zeros((0, *self._action_shape), np.int64)
        return self.session.run(["action"], feed)[0]
