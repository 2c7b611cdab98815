"""servegym/ExpertPlacement-v0: MoE expert placement and replication under drifting load.

Expert-parallel MoE serving runs at the speed of its most loaded GPU. At every rebalance interval
the agent sets the placement of each simulated MoE layer for the next interval through small
masked sub-steps (``envs.expert_placement.kernels``): a mode per layer (keep, LPT repack, EPLB,
or custom = EPLB's replication packed migration-aware); with ``replica_substeps=True`` custom
then takes up to one sub-step per redundant slot choosing which of the K hottest experts gets it
(or FILL: the rest by EPLB's greedy rule). The observation is fixed-size
(global features + K candidate experts with loads in units of the mean expert load), so one policy
works for any number of experts and GPUs. Reward, given when a rebalance completes: minus the
next interval's MoE time (all layers and steps, plus migration blocking), per layer-step, in units
of ``reward_scale_s``. The cluster model and its costs are ``envs.expert_placement.sim``.

Episodes: one warm-up interval on the initial (round-robin) placement fills the load history,
then ``intervals`` rebalances. Training episodes draw generator seeds of the train split and the
training drifts; ``split="test"`` uses held-out seeds and drifts never seen in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import hwmodels
from envs.expert_placement import kernels as K
from envs.expert_placement.sim import ExpertPlacementConfig, PlacementSim, make_config
from envs.native_vec import NativeVecEnv

ENV_ID = "servegym/ExpertPlacement-v0"
ORACLES = ("eplb_clairvoyant", "perfect_balance")


class ExpertPlacementVecEnv(NativeVecEnv):
    """E copies of ExpertPlacement stepped together (SB3 VecEnv, numba kernels over the batch)."""

    table_metrics = ("normalized_score", "moe_layer_time_s", "migration_bytes", "imbalance", "tokens_per_gpu_s",
                     "a2a_bytes", "return_mean")

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        return "drift", self.config.drifts()

    def __init__(self, num_envs: int = 1, config: ExpertPlacementConfig | None = None, seed: int | None = None,
                 **kwargs: Any):
        self.config = cfg = make_config(config, **kwargs)
        self.sim = PlacementSim(num_envs, cfg, seed)
        sh = self.sh = self.sim.sh
        self.K = cfg.candidates
        self.n_actions = K.FIRST_CANDIDATE + self.K
        n_obs = K.N_GLOBAL + self.K * K.N_CAND
        self.render_mode = None
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (n_obs,), np.float32), spaces.Discrete(self.n_actions))
        n = num_envs
        self.phase = np.zeros(n, np.int64)
        self.layer = np.zeros(n, np.int64)
        self.rep_done = np.zeros(n, np.int64)
        self.cnt_pend = np.ones((n, sh.E), np.int64)
        self.cand = np.zeros((n, self.K), np.int64)
        self.pending = np.zeros((n, sh.L, sh.P), np.int64)
        self.proj = np.zeros((n, 3, sh.P), np.int64)
        self.feats = np.zeros((n, K.N_GLOBAL))
        self._obs = np.zeros((n, n_obs))
        self._mask = np.zeros((n, self.n_actions), np.bool_)
        self._actions = np.zeros(n, np.int64)
        self._rew = np.zeros(n)
        self._returns = np.zeros(n)
        self._lengths = np.zeros(n, np.int64)
        self._masked = np.zeros(n, np.int64)
        self.oracle: str | None = None
        # How expensive a move is: one GPU's slots over the slowest link / an interval's all-to-all.
        link = sh.nodes == 1
        fetch = hwmodels.weight_transfer_time(sh.S * sh.expert_bytes, cfg.gpu, intra_node=link,
                                              inter_node_bw=cfg.inter_node_bw)
        a2a = float(self.sim.cost.a2a(np.array(self.sim.cost.sent_rows))) * 2 * cfg.interval_steps
        self._mig_cost = float(fetch) / a2a
        self._all = np.arange(n)
        if seed is not None:
            self.seed(seed)

    def set_oracle(self, name: str | None) -> None:
        """Privileged reference play (used by the oracle policies, never by an agent): the env
        ignores placements chosen and plays EPLB on the true next-interval load, or the bound."""
        if name is not None and name not in ORACLES:
            raise ValueError(f"ExpertPlacement: oracle must be one of {ORACLES} or None, got {name!r}")
        self.oracle = name

    # --- VecEnv API
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        seeds = super().seed(seed)
        base = 0 if seed is None else int(seed)
        self.sim.base_seed = self.sim.load.seed = base
        self.sim.rngs = [np.random.default_rng([base, e]) for e in range(self.num_envs)]
        return seeds

    def reset(self) -> np.ndarray:
        self._reset_seeds()
        self._reset_options()
        self.sim.episodes[:] = 0
        self._reset_envs(self._all)
        self._refresh(self._all)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._obs.astype(np.float32)

    def _reset_envs(self, envs: np.ndarray) -> None:
        self.sim.reset(envs)
        self.phase[envs] = K.MODE
        self.layer[envs] = 0
        self.rep_done[envs] = 0
        self._returns[envs] = 0.0
        self._lengths[envs] = 0
        self._masked[envs] = 0

    def _refresh(self, envs: np.ndarray) -> None:
        sim, sh = self.sim, self.sh
        self.feats[envs, 14] = self._mig_cost
        self.feats[envs, 18] = sh.R / sh.P
        self.feats[envs, 19] = 1.0 / sh.G
        frac = sim.interval / self.config.intervals
        K.refresh(envs, self.phase, self.layer, self.rep_done, self.cnt_pend, sim.window, sim.last, sim.slow,
                  sim.next_share, sim.place, self.proj, self.feats, self.cand, self._obs, self._mask, sh.R, frac,
                  sh.G, sh.gpn, sh.groups, sh.nodes)

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions).reshape(self.num_envs)
        if a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.n_actions:
            raise ValueError(f"ExpertPlacement: actions must be integers in [0, {self.n_actions}), got {a!r}")
        # A masked action (from an algorithm that ignores masks, e.g. plain PPO) becomes the first
        # legal one: KEEP on a mode sub-step, FILL on a replica sub-step; counted per episode.
        bad = ~self._mask[self._all, a]
        self._masked += bad
        self._actions[:] = np.where(bad, self._mask.argmax(1), a)

    def advance(self) -> tuple[np.ndarray, np.ndarray]:
        """Apply ``_actions``; play the interval of every env whose rebalance is complete. Returns
        (envs that played an interval, those whose episode ended)."""
        sim, sh, cfg = self.sim, self.sh, self.config
        K.apply_actions(self._all, self._actions, self.phase, self.layer, self.rep_done, self.cnt_pend, self.cand,
                        sim.place, self.pending, self.proj, sim.window, sh.R, sh.G, cfg.replica_substeps)
        self._rew[:] = 0.0
        ready = np.flatnonzero(self.phase == K.READY)
        done = ready[:0]
        if ready.size:
            if self.oracle == "eplb_clairvoyant":
                self.pending[ready] = sim.clairvoyant_placement(ready)
            cost = sim.run_interval(ready, self.pending[ready], bound=self.oracle == "perfect_balance")
            self._rew[ready] = -cost / (cfg.interval_steps * sh.L) / cfg.reward_scale_s
            self.phase[ready] = K.MODE
            self.layer[ready] = 0
            done = ready[sim.done(ready)]
        return ready, done

    def step_wait(self):
        _, done = self.advance()
        self._returns += self._rew
        self._lengths += 1
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        for e in done:
            self._refresh(np.array([e]))
            infos[e] = {"terminal_observation": self._obs[e].astype(np.float32),
                        "TimeLimit.truncated": False,
                        "episode": {"r": float(self._returns[e]), "l": int(self._lengths[e])},
                        "metrics": self.episode_metrics(int(e))}
        if done.size:
            self._reset_envs(done)
        self._refresh(self._all)
        dones = np.zeros(self.num_envs, bool)
        dones[done] = True
        return self._obs.astype(np.float32), self._rew.astype(np.float32), dones, infos

    def episode_metrics(self, e: int) -> dict[str, float]:
        return {**self.sim.metrics(e), "masked_actions": float(self._masked[e])}


class ExpertPlacementEnv(gym.Env):
    """The single-env Gymnasium view (E = 1) of :class:`ExpertPlacementVecEnv`."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (Gymnasium convention)

    def __init__(self, **kwargs: Any):
        self._vec = ExpertPlacementVecEnv(1, **kwargs)
        self.observation_space = self._vec.observation_space
        self.action_space = self._vec.action_space
        self.config = self._vec.config

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._vec.seed(seed)
        return self._vec.reset()[0], {}

    def step(self, action):
        v = self._vec
        a = np.asarray(action)
        if a.shape not in ((), (1,)) or not self.action_space.contains(int(a.reshape(-1)[0])):
            raise ValueError(f"ExpertPlacement: action must be an integer in [0, {v.n_actions}), got {action!r}")
        v.step_async(a.reshape(1).astype(np.int64))
        _, done = v.advance()
        info: dict[str, Any] = {}
        if done.size:
            info["metrics"] = v.episode_metrics(0)
            v._refresh(v._all)
            obs = v._obs[0].astype(np.float32)
            return obs, float(v._rew[0]), True, False, info
        v._refresh(v._all)
        return v._obs[0].astype(np.float32), float(v._rew[0]), False, False, info

    def action_masks(self) -> np.ndarray:
        return self._vec._mask[0].copy()
