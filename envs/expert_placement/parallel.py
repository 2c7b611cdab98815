"""ExpertPlacement as a PettingZoo ParallelEnv: one agent per GPU decides what its slots hold.

At each rebalance the agents act once per simulated MoE layer (all GPUs at once). Agent ``gpu_g``
either keeps its slots (action 0) or copies candidate k - 1 of its K candidates (the hottest
experts by load per replica that it does not hold) into its least-loaded slot holding a redundant
replica (an expert with another replica elsewhere); a masked action keeps the slots (counted in
``metrics["masked_actions"]``). Moves apply coolest GPU first; a move whose
victim has meanwhile become an expert's last replica is dropped, so every expert keeps a replica.
After the last layer the interval is played with the cluster model of ``envs.expert_placement.sim``
(the same costs as ExpertPlacement-v0) and every agent gets the same reward: minus that interval's
MoE time plus migration blocking, per layer-step, in ``reward_scale_s`` units (cooperative).
"""

from __future__ import annotations

import functools
from typing import Any

import numba as nb
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from envs.expert_placement import algos as A
from envs.expert_placement.sim import ExpertPlacementConfig, PlacementSim, make_config
from envs.native_vec import check_render_mode, check_seed, draw_episode, episode_options, received

# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "AGENT_FEATURES then CANDIDATE_FEATURES per candidate (every GPU agent)"
    ),
}
OBS_VERSION = 1
AGENT_FEATURES = ("gpu_load", "gpu_rank", "imbalance", "layer", "interval", "evictable", "victim_load")
CANDIDATE_FEATURES = ("present", "load", "per_replica", "per_replica_added", "replicas", "trend", "next_layer")


@nb.njit(cache=True)
def _observe(w: np.ndarray, slow: np.ndarray, nxt: np.ndarray, place: np.ndarray, G: int, K: int,
             cand: np.ndarray, victim: np.ndarray, obs: np.ndarray, mask: np.ndarray, layer_frac: float,
             interval_frac: float) -> None:
    E, P = w.shape[0], place.shape[0]
    S = P // G
    cnt = np.zeros(E, np.int64)
    A.replica_counts(place, E, cnt)
    gl = np.zeros(G)
    A.gpu_loads(w, place, G, gl)
    m = gl.mean() if gl.mean() > 0 else 1.0
    order = np.argsort(-w / cnt, kind="mergesort")
    rank = np.argsort(np.argsort(gl, kind="mergesort"), kind="mergesort")
    nf = 7
    for g in range(G):
        o = obs[g]
        o[:] = 0.0
        held = np.zeros(E, np.bool_)
        victim[g] = -1
        best = 0.0
        n_ev = 0
        for s in range(S):
            x = place[g * S + s]
            held[x] = True
            if cnt[x] >= 2:
                n_ev += 1
                v = w[x] / cnt[x]
                if victim[g] < 0 or v < best:
                    victim[g], best = g * S + s, v
        o[0] = gl[g] / m
        o[1] = rank[g] / max(G - 1, 1)
        o[2] = gl.max() / m
        o[3] = layer_frac
        o[4] = interval_frac
        o[5] = n_ev / S
        o[6] = best
        mask[g, :] = 0
        mask[g, 0] = 1
        k = 0
        for j in range(E):
            if k >= K:
                break
            x = order[j]
            if held[x]:
                continue
            cand[g, k] = x
            b = nf + k * 7
            o[b] = 1.0
            o[b + 1] = w[x]
            o[b + 2] = w[x] / cnt[x]
            o[b + 3] = w[x] / (cnt[x] + 1)
            o[b + 4] = cnt[x]
            o[b + 5] = w[x] - slow[x]
            o[b + 6] = nxt[x]
            if victim[g] >= 0:
                mask[g, k + 1] = 1
            k += 1
        for kk in range(k, K):
            cand[g, kk] = -1


@nb.njit(cache=True)
def _apply(actions: np.ndarray, w: np.ndarray, place: np.ndarray, cand: np.ndarray, victim: np.ndarray, G: int) -> None:
    """Agents' copies, coolest GPU first; a copy whose victim is now a last replica is dropped."""
    E = w.shape[0]
    cnt = np.zeros(E, np.int64)
    A.replica_counts(place, E, cnt)
    gl = np.zeros(G)
    A.gpu_loads(w, place, G, gl)
    for g in np.argsort(gl, kind="mergesort"):
        a = actions[g]
        if a == 0 or victim[g] < 0:
            continue
        x = cand[g, a - 1]
        old = place[victim[g]]
        if x < 0 or cnt[old] < 2:
            continue
        place[victim[g]] = x
        cnt[old] -= 1
        cnt[x] += 1


class ExpertPlacementParallelEnv(ParallelEnv):
    """One agent per GPU; cooperative reward. Observations are dicts with ``observation`` and
    ``action_mask`` (PettingZoo's convention for masked actions)."""

    metadata = {"name": "expert_placement_v0", "render_modes": []}  # noqa: RUF012

    def __init__(self, config: ExpertPlacementConfig | None = None, seed: int | None = None,
                 render_mode: str | None = None, **kwargs: Any):
        # PettingZoo's constructors take render_mode (None was an unknown config field); none is rendered
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"], "ExpertPlacementParallelEnv")
        self.config = cfg = make_config(config, **kwargs)
        self.sim = PlacementSim(1, cfg)
        self._rng = np.random.default_rng(check_seed(seed, "ExpertPlacementParallelEnv"))
        self._started = 0
        self._masked = 0
        sh = self.sh = self.sim.sh
        self.K = cfg.candidates
        self.possible_agents = [f"gpu_{g}" for g in range(sh.G)]
        self.agents: list[str] = []
        self._n_obs = len(AGENT_FEATURES) + self.K * len(CANDIDATE_FEATURES)
        self._obs = np.zeros((sh.G, self._n_obs))
        self._mask = np.zeros((sh.G, self.K + 1), np.int8)
        self._cand = np.full((sh.G, self.K), -1, np.int64)
        self._victim = np.full(sh.G, -1, np.int64)
        self._pending = np.zeros((1, sh.L, sh.P), np.int64)
        self._layer = 0

    @functools.cache  # noqa: B019  (PettingZoo's documented pattern)
    def observation_space(self, agent: str) -> spaces.Dict:
        return spaces.Dict({"observation": spaces.Box(-np.inf, np.inf, (self._n_obs,), np.float32),
                            "action_mask": spaces.Box(0, 1, (self.K + 1,), np.int8)})

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(self.K + 1)

    def _observations(self) -> dict[str, dict[str, np.ndarray]]:
        sim, l = self.sim, self._layer
        _observe(sim.window[0, l], sim.slow[0, l], sim.next_share[0, l], self._pending[0, l], self.sh.G, self.K,
                 self._cand, self._victim, self._obs, self._mask, l / self.sh.L,
                 float(sim.interval[0]) / self.config.intervals)
        return {a: {"observation": self._obs[g].astype(np.float32), "action_mask": self._mask[g].copy()}
                for g, a in enumerate(self.agents)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        """``seed`` restarts the generator (as ``ExpertPlacementVecEnv`` env 0 seeded so);
        ``options`` ``{"window": w, "drift": d}`` name the episode (``draw_episode``)."""
        seed = check_seed(seed, "ExpertPlacementParallelEnv")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._started = 0
        w, d = draw_episode("ExpertPlacementParallelEnv", self.config.window_order, self._rng, self._started, 0, 1,
                            self.sim.load.n_windows, "drift", self.config.drifts(),
                            episode_options("ExpertPlacementParallelEnv", options, "drift"))
        self._started += 1
        self._masked = 0
        self.sim.reset(np.array([0]), [w], [d])
        self.agents = list(self.possible_agents)
        self._layer = 0
        self._pending[:] = self.sim.place
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, int]):
        sh, sim = self.sh, self.sim
        if not self.agents:
            raise RuntimeError("ExpertPlacementParallelEnv: step() before reset() or after the episode ended; "
                               "call reset()")
        acts = np.zeros(sh.G, np.int64)
        for g, a in enumerate(self.agents):
            if a not in actions:
                raise ValueError(f"ExpertPlacementParallelEnv: no action for agent {a!r}")
            v = actions[a]
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v <= self.K:
                raise ValueError(f"ExpertPlacementParallelEnv: action of {a} must be an integer in [0, {self.K}], "
                                 f"got {received(v)}")
            # A masked action (e.g. sampled without the mask) keeps the slots, as ExpertPlacementVecEnv
            # plays its first legal action; counted per episode (metrics["masked_actions"]).
            if not self._mask[g, v]:
                self._masked += 1
                v = 0
            acts[g] = v
        _apply(acts, sim.window[0, self._layer], self._pending[0, self._layer], self._cand, self._victim, sh.G)
        self._layer += 1
        reward, done = 0.0, False
        infos: dict[str, dict] = {a: {} for a in self.agents}
        if self._layer == sh.L:
            cost = sim.run_interval(np.array([0]), self._pending.copy())[0]
            reward = -cost / (self.config.interval_steps * sh.L) / self.config.reward_scale_s
            self._layer = 0
            self._pending[:] = sim.place
            done = bool(sim.done(np.array([0]))[0])
            if done:
                m = {**sim.metrics(0), "masked_actions": float(self._masked)}
                infos = {a: {"metrics": m} for a in self.agents}
        obs = self._observations()
        rewards = {a: reward for a in self.agents}
        terms = {a: done for a in self.agents}
        truncs = {a: False for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terms, truncs, infos


def parallel_env(**kwargs: Any) -> ExpertPlacementParallelEnv:
    """PettingZoo's module-level factory (``ExpertPlacementConfig`` fields, ``seed``, and ``render_mode``: None,
    the only mode, as ``metadata["render_modes"]`` is empty; another is a ``ValueError``)."""
    return ExpertPlacementParallelEnv(**kwargs)
