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

from typing import Any

import numpy as np
from gymnasium import spaces

import hwmodels
from envs.config_check import check_sizes
from envs.expert_placement import kernels as K
from envs.expert_placement import teacher as T
from envs.expert_placement.sim import ExpertPlacementConfig, PlacementSim, make_config
from envs.native_vec import NativeVecEnv, VecEnvView, item_features
from envs.vector import NativeVectorEnv

ENV_ID = "servegym/ExpertPlacement-v0"
ORACLES = ("eplb_clairvoyant", "perfect_balance")


def observation_size(candidates: int) -> int:
    """Features in one env's observation: ``N_GLOBAL`` then ``N_CAND`` per candidate."""
    return K.N_GLOBAL + candidates * K.N_CAND


def memory_bytes(num_envs: int, gpus: int, layers: int, intervals: int, interval_steps: int, tokens_per_gpu: int,
                 candidates: int, experts: int, redundant_slots: int = 0) -> int:
    """A lower bound on the bytes a batch of ``num_envs`` takes (``sim.PlacementSim``, this env): the FFN time
    table (tokens_per_gpu x gpus + 1 float64), and per env the episode's counts ([(intervals + 1) x interval_steps,
    layers, experts] int32), placements and pending moves ([layers, P] int64 each: P = experts + redundant_slots,
    at least gpus; redundant_slots=0 for a lower bound), four [layers, experts] float64 load views, the EPLB
    options of every rebalance ([intervals + 1, layers] of P int16 slots, interval_steps float64 FFN times and
    int64 peaks, a flag), the observation ([n_obs] float32) and the candidates ([candidates] int64); the
    observation space's bounds (10 bytes a feature)."""
    P = max(experts + redundant_slots, gpus)
    n_obs = observation_size(candidates)
    steps = (intervals + 1) * interval_steps
    per_env = (4 * steps * layers * experts + 16 * layers * P + 32 * layers * experts
               + (intervals + 1) * layers * (2 * P + 16 * interval_steps + 1) + 4 * n_obs + 8 * candidates)
    return 8 * (tokens_per_gpu * gpus + 1) + num_envs * per_env + 10 * n_obs


class ExpertPlacementVecEnv(NativeVecEnv):
    """E copies of ExpertPlacement stepped together (SB3 VecEnv, numba kernels over the batch).

    Episode selection (``NativeVecEnv.draw_episode``): ``window`` is the generated episode's
    index (its generator seed derives from it and the split) or, with recorded counts, the
    episode's start (step ``window * 7919`` mod the starts); the knob is ``drift``."""

    env_name = "ExpertPlacement"
    episode_knob = "drift"
    episodes_independent_of_sweep = True  # the generator draws each (window, drift) episode on its own
    table_metrics = ("normalized_score", "moe_layer_time_s", "migration_bytes", "imbalance", "tokens_per_gpu_s",
                     "a2a_bytes", "return_mean")

    def sweep(self) -> tuple[str, tuple[float, ...]]:
        return "drift", self.config.drifts()

    def __init__(self, num_envs: int = 1, config: ExpertPlacementConfig | None = None, seed: int | None = None,
                 **kwargs: Any):
        self.config = cfg = make_config(config, **kwargs)
        given = kwargs.get("redundant_slots", (config or ExpertPlacementConfig()).redundant_slots)
        experts = hwmodels.get_model(cfg.model).experts
        sizes = {"num_envs": num_envs, "gpus": cfg.gpus, "layers": cfg.layers, "intervals": cfg.intervals,
                 "interval_steps": cfg.interval_steps, "tokens_per_gpu": cfg.tokens_per_gpu,
                 "candidates": cfg.candidates}
        if given is not None:  # else the fewest that fill the GPUs: P = experts + it < experts + gpus
            sizes["redundant_slots"] = cfg.redundant_slots
        check_sizes("ExpertPlacement", sizes, lambda **s: memory_bytes(experts=experts, **s), "the batch's arrays",
                    minimums={"redundant_slots": 0})
        self.sim = PlacementSim(num_envs, cfg)
        sh = self.sh = self.sim.sh
        self.K = cfg.candidates
        n_actions = K.FIRST_CANDIDATE + self.K
        n_obs = observation_size(self.K)
        super().__init__(num_envs, spaces.Box(-np.inf, np.inf, (n_obs,), np.float32), spaces.Discrete(n_actions))
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
        self._masked = np.zeros(n, np.int64)
        self.oracle: str | None = None
        # How expensive a move is: one GPU's slots over the slowest link / an interval's all-to-all.
        link = sh.nodes == 1
        fetch = hwmodels.weight_transfer_time(sh.S * sh.expert_bytes, cfg.gpu, intra_node=link,
                                              inter_node_bw=cfg.inter_node_bw)
        a2a = float(self.sim.cost.a2a(np.array(self.sim.cost.sent_rows))) * 2 * cfg.interval_steps
        self._mig_cost = float(fetch) / a2a
        self._all = np.arange(n)
        self._sent_rows = int(self.sim.cost.sent_rows)
        self._a2a2 = np.zeros(0)
        self._fit_time_tables(sh.tokens_per_step * sh.k)
        if seed is not None:
            self.seed(seed)

    def set_oracle(self, name: str | None) -> None:
        """Privileged reference play (used by the oracle policies, never by an agent): the env
        ignores placements chosen and plays EPLB on the true next-interval load, or the bound."""
        if name is not None and name not in ORACLES:
            raise ValueError(f"ExpertPlacement: oracle must be one of {ORACLES} or None, got {name!r}")
        self.oracle = name

    # --- NativeVecEnv hooks
    def _reset_envs(self, envs: np.ndarray) -> None:
        drifts = self.config.drifts()
        picks = [self.draw_episode(int(e), self.sim.load.n_windows, drifts) for e in envs]
        self.sim.reset(envs, [w for w, _ in picks], [d for _, d in picks])
        if self.sim.load.recorded is not None:  # generated rows sum to tokens_per_step x top_k: the tables cover them
            self._fit_time_tables(max(int(self.sim.counts[e].sum(-1, dtype=np.int64).max()) for e in envs))
        self.phase[envs] = K.MODE
        self.layer[envs] = 0
        self.rep_done[envs] = 0
        self._masked[envs] = 0
        self._teacher_cache = None
        if getattr(self, "_teacher_tables", None) is not None:
            for e in envs:
                self._teacher_tables[int(e)] = None
        self._refresh(np.asarray(envs))

    def _fit_time_tables(self, max_rows: int) -> None:
        """The kernels' all-to-all and migration time tables (``CostModel.time_tables``), grown to cover a
        busiest GPU of ``max_rows`` token rows (a step's total count; recorded counts may exceed the
        generator's tokens_per_step x top_k) and the most experts a GPU can receive in a rebalance."""
        if max_rows >= self._a2a2.shape[0]:
            self._a2a2, self._mig_in, self._mig_out = self.sim.cost.time_tables(
                max(max_rows, self._sent_rows), self.sh.L * self.sh.S)

    def _refresh(self, envs: np.ndarray) -> None:
        sim, sh = self.sim, self.sh
        self.feats[envs, 14] = self._mig_cost
        self.feats[envs, 18] = sh.R / sh.P
        self.feats[envs, 19] = 1.0 / sh.G
        frac = sim.interval / self.config.intervals
        K.refresh(envs, self.phase, self.layer, self.rep_done, self.cnt_pend, sim.window, sim.last, sim.slow,
                  sim.next_share, sim.place, self.proj, self.feats, self.cand, self._obs, self._mask, sh.R, frac,
                  sh.G, sh.gpn, sh.groups, sh.nodes, sim.counts, sim.interval, self.config.interval_steps,
                  sim.last_moe_s, self.pending, sh.S, self.config.dispatch == "even", sim.cost.ffn_table,
                  sim.cost.latency, self._a2a2, self._sent_rows, self._mig_in, self._mig_out, sim.opt_place,
                  sim.opt_ffn, sim.opt_peak, sim.opt_ok)

    def _accept_actions(self, a: np.ndarray) -> np.ndarray:
        # A masked action (from an algorithm that ignores masks, e.g. plain PPO) becomes the first
        # legal one: KEEP on a mode sub-step, FILL on a replica sub-step; counted per episode.
        bad = ~self._mask[self._all, a]
        self._masked += bad
        return np.where(bad, self._mask.argmax(1), a)

    def advance(self) -> None:
        """Apply ``_actions``; play the interval of every env whose rebalance is complete (its
        reward; ``_term`` where that was the episode's last interval); observe every env."""
        sim, sh, cfg = self.sim, self.sh, self.config
        K.apply_actions(self._all, self._actions, self.phase, self.layer, self.rep_done, self.cnt_pend, self.cand,
                        sim.place, self.pending, self.proj, sim.window, sh.R, sh.G, cfg.replica_substeps)
        self._rew[:] = 0.0
        self._term[:] = False
        self._teacher_cache = None
        ready = np.flatnonzero(self.phase == K.READY)
        if ready.size:
            if self.oracle == "eplb_clairvoyant":
                self.pending[ready] = sim.clairvoyant_placement(ready)
            cost = sim.run_interval(ready, self.pending[ready], bound=self.oracle == "perfect_balance")
            self._rew[ready] = -cost / (cfg.interval_steps * sh.L) / cfg.reward_scale_s
            self.phase[ready] = K.MODE
            self.layer[ready] = 0
            self._term[ready[sim.done(ready)]] = True
        self._refresh(self._all)

    # --- the privileged teacher (imitation labels only; envs/expert_placement/teacher.py)
    def teacher_costs(self) -> np.ndarray:
        """Each mode's cost in seconds for every env [E, 4] (float64; ``inf`` on a replica sub-step):
        ``envs.expert_placement.teacher.mode_costs`` on the next interval's true load (this layer's and
        the later layers' MoE time, these chosen at their best, + the rebalance's migration, the
        layers before as the policy chose them). Privileged: it reads the future load. Kept until
        the batch steps; the per-rebalance table until the rebalance ends."""
        if getattr(self, "_teacher_cache", None) is None:
            out = np.full((self.num_envs, K.N_MODES), np.inf)
            if getattr(self, "_teacher_tables", None) is None:
                self._teacher_tables = [None] * self.num_envs
            for e in np.flatnonzero(self.phase == K.MODE):
                e = int(e)
                key = (int(self._episodes_started[e]), int(self.sim.interval[e]))
                if self._teacher_tables[e] is None or self._teacher_tables[e][0] != key:
                    self._teacher_tables[e] = (key, T.interval_table(self.sim, e, self.config.teacher_rollout))
                out[e] = T.mode_costs(self.sim, e, int(self.layer[e]), self.pending[e], self._teacher_tables[e][1],
                                      self.config.teacher_rollout)
            self._teacher_cache = out
        return self._teacher_cache

    def teacher_actions(self) -> np.ndarray:
        """The teacher's action for every env [E] (int64): on a mode sub-step the mode of least
        interval cost in hindsight (:meth:`teacher_costs`; the first of equal costs), on a replica
        sub-step FILL (EPLB's greedy replicas: the teacher does not choose replicas)."""
        c = self.teacher_costs()
        return np.where(self.phase == K.MODE, c.argmin(1), K.FILL).astype(np.int64)

    def teacher_targets(self) -> np.ndarray:
        """Every action the teacher accepts [E, A] (bool): the modes whose cost equals the least
        (to 1e-12 relative: two modes giving the same placement tie), FILL on a replica sub-step."""
        c = self.teacher_costs()
        out = np.zeros((self.num_envs, self.n_actions), bool)
        mode = self.phase == K.MODE
        lo = c.min(1, keepdims=True)
        out[:, :K.N_MODES] = mode[:, None] & (c <= lo + 1e-12 * np.abs(lo))
        out[~mode, K.FILL] = True
        return out

    def teacher_values(self, clip_pct: float = 50.0) -> np.ndarray:
        """Each action's value for imitation by regression (``agents.imitation``, ``target="values"``)
        [E, A] (float32): on a mode sub-step minus each mode's excess cost over the best mode, in
        percent of the best (:meth:`teacher_costs`; 0 for the teacher's choice, at most ``clip_pct``
        below: only actions far from the best are clipped, never the order near it), so a policy
        that regresses them and takes the largest picks the mode of least expected cost given what
        it observes, not the mode the teacher picks most often (a teacher reading the future picks
        KEEP or EPLB where the observation cannot tell). 0 elsewhere (a replica sub-step's legal
        actions: FILL or a candidate; the teacher does not choose replicas)."""
        c = self.teacher_costs()
        out = np.zeros((self.num_envs, self.n_actions), np.float32)
        mode = self.phase == K.MODE
        lo = c[mode].min(1, keepdims=True)
        out[mode, :K.N_MODES] = -np.minimum(100.0 * (c[mode] - lo) / lo, clip_pct)
        return out

    def episode_metrics(self, e: int) -> dict[str, float]:
        return {**self.sim.metrics(e), "masked_actions": float(self._masked[e])}

    def feature_names(self) -> list[str]:
        return item_features(K.GLOBAL_FEATURES, K.CANDIDATE_FEATURES, self.K, "cand")

    def action_meanings(self) -> list[str]:
        # An action means a mode or a candidate depending on the sub-step phase (the observation's
        # phase_* features): both meanings, per index.
        modes = ("keep", "lpt", "eplb", "custom")
        out = []
        for a in range(self.n_actions):
            mode = modes[a] if a < K.N_MODES else "-"
            rep = "fill" if a == K.FILL else (f"replicate cand{a - K.FIRST_CANDIDATE}" if a >= K.FIRST_CANDIDATE else "-")
            out.append(f"mode sub-step: {mode}; replica sub-step: {rep}")
        return out

    def render_text(self, e: int = 0) -> str:
        sim, sh = self.sim, self.sh
        phase = {K.MODE: "mode", K.READY: "ready"}.get(int(self.phase[e]), "replica")
        return (f"ExpertPlacement env {e}: interval {int(sim.interval[e])}/{self.config.intervals}, layer "
                f"{int(self.layer[e])}/{sh.L}, sub-step {phase}, drift {float(sim.drift[e]):g}\n"
                f"  {sh.E} experts on {sh.G} GPUs x {sh.S} slots; this layer's imbalance (max/mean GPU load) "
                f"on the last interval's load {self.feats[e, 5]:.3f}; masked actions so far {int(self._masked[e])}\n"
                f"  legal actions: {np.flatnonzero(self._mask[e]).tolist()}")


class ExpertPlacementEnv(VecEnvView):
    """The single-env Gymnasium view (E = 1) of :class:`ExpertPlacementVecEnv`."""

    vec_class = ExpertPlacementVecEnv


class ExpertPlacementVectorEnv(NativeVectorEnv):
    """The Gymnasium ``VectorEnv`` of :class:`ExpertPlacementVecEnv` (``gymnasium.make_vec``'s vector entry point)."""

    vec_class = ExpertPlacementVecEnv
