"""Playing a batch of episodes with one policy: the loop evaluation, the capacity search and the
leaderboard share."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agents.policy import Policy

# The metric each episode's figures gain here (beside the environment's ``episode_metrics``): its return.
RETURN_METRIC = "return_mean"


def run_episodes(
    vec: Any, policy: Policy, extras: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, float]], np.ndarray]:
    """Run each env of ``vec`` through its first episode; metrics per episode and the policy's
    wall time per call (seconds, one call decides for the whole batch). With ``extras``, also
    collect each episode's optional per-request records and time series (for plots)."""
    obs = vec.reset()
    E = vec.num_envs
    results: list[dict[str, float] | None] = [None] * E
    lat = []
    while any(r is None for r in results):
        mask = vec.action_masks()
        t = time.perf_counter_ns()
        actions = policy.act(obs, mask)
        lat.append(time.perf_counter_ns() - t)
        obs, _, dones, infos = vec.step(np.asarray(actions))
        for e in np.flatnonzero(dones):
            if results[e] is None:
                m = dict(infos[e]["metrics"])
                m[RETURN_METRIC] = infos[e]["episode"]["r"]
                results[e] = m
                if extras is not None:
                    extras.append({"env": int(e), **{k: infos[e][k] for k in ("requests", "series")
                                                     if k in infos[e]}})
    if extras is not None:
        extras.sort(key=lambda x: x["env"])
    return [r for r in results if r is not None], np.asarray(lat, np.float64) * 1e-9
