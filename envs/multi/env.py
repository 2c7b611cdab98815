"""The multi-agent cluster: ingress routers, an autoscaler and per-replica admission controllers
deciding together on one clock with one shared reward (PettingZoo ``ParallelEnv``).

Roles and their observation/action layouts (``role_spaces``):

* ``router_j`` (``n_routers``): exactly Routing-v0's (one request each step, ``Discrete(R)``
  masked to serving replicas), each router with its own view of the load reports (stale by
  ``stale_s``; the routers of one step never see each other's concurrent choices).
* ``admission_r`` (one per replica slot): exactly KVAdmission-v0's (``envs.kv_admission.kernels``
  layout for replica r), the knobs held until the next step.
* ``autoscaler``: a small built-in HPA-style role (``envs.multi.kernels.AUTOSCALER_FEATURES``),
  ``Discrete(2 * max_step + 1)`` replica changes applied every ``interval_s``; new replicas serve
  after ``hwmodels.cold_start_time``. (servegym/Autoscale-v0 models pools of replicas as fluids
  on several GPU types with its own 21-feature observation; its heuristics read its Scenario, so
  this role keeps a layout of its own; see the notes.)

So Routing-v0's and KVAdmission-v0's heuristics and zoo agents act here unchanged, and the
heuristic team is each role's best heuristic (``agents.heuristics.multi``).

Reward, shared by every agent: ``slo - cost_weight * dollars`` per step, where ``slo`` is
Routing-v0's (+1 per request finished within its SLO, -1 per request the moment it misses) and
dollars are replica-seconds billed (starting, serving, draining) at ``hwmodels.price_per_gpu_hour``.
Per-agent terms are in ``infos[agent]["terms"]``: ``slo``, ``cost``, and for admission
controllers ``replica_slo`` (the same SLO term restricted to their replica).

``MultiCluster`` is the batched core (E clusters, arrays per role, one kernel call per step);
``MultiClusterEnv`` its PettingZoo view (E = 1); ``RoleVecEnv`` the SB3 adapter that trains one
role with parameter sharing: a VecEnv over E x (agents of the role), the other roles played by
given batched policies (no per-agent Python loop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

import hwmodels
from envs.kv_admission import env as kva
from envs.multi import kernels as MK
from envs.routing import env as rt
from envs.routing import kernels as RK
from envs.routing import teacher as T
from envs.core import state as S
from envs import config_check
from envs.core.workload import load_split, max_window_gaps
from traces.checks import is_integer
from envs.native_vec import (SingleObjectVecEnv, check_actions, check_render_mode, check_seed, draws_undone_on_error,
                              episode_options, received)

ROLES = ("router", "admission", "autoscaler")


@dataclass(frozen=True)
class MultiConfig:
    """The cluster (any ``RoutingConfig`` field) and the agents; ``make_config`` splits kwargs."""

    routing: rt.RoutingConfig = rt.RoutingConfig()  # noqa: RUF009 (frozen: a shared default is safe)
    n_routers: int = 2
    initial_replicas: int | None = None  # serving at the start (default: all ``replicas``)
    min_replicas: int = 1
    interval_s: float = 15.0  # autoscaler period (Kubernetes HPA sync period default: 15 s)
    max_step: int = 2  # replicas added or removed per control instant
    cold_start_s: float | None = None  # default: hwmodels.cold_start_time(model, gpu, tp)
    cost_weight: float = 30.0  # reward per dollar: a replica-hour at $2.69 weighs ~81 missed requests
    candidates: int = 8  # KVAdmission's queue heads in the admission observation

    def validate(self) -> None:
        R = self.routing.replicas
        for name in ("n_routers", "min_replicas", "max_step", "candidates"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"multi: {name} must be an integer >= 1, got {v!r}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= R:
            raise ValueError(f"multi: initial_replicas must be in [min_replicas, replicas] = "
                             f"[{self.min_replicas}, {R}], got {self.initial_replicas}")
        if self.min_replicas > R:
            raise ValueError(f"multi: min_replicas {self.min_replicas} > replicas {R}")
        if not self.interval_s > 0:
            raise ValueError(f"multi: interval_s must be > 0, got {self.interval_s}")
        if self.cold_start_s is not None and not self.cold_start_s >= 0:
            raise ValueError(f"multi: cold_start_s must be >= 0, got {self.cold_start_s}")
        if not self.cost_weight >= 0:
            raise ValueError(f"multi: cost_weight must be >= 0, got {self.cost_weight}")


# Routing-v0 fields of its router's reward and score only (the TTFT tail bound) and of its privileged
# imitation teacher; the cluster's agents are rewarded by their own terms (``MultiConfig``) and have no
# teacher, so these would be accepted and never read.
ROUTER_ONLY_FIELDS = ("ttft_bound_x", "ttft_bound_penalty", "teacher_horizon_s", "teacher_ttft_slack", "teacher_threads")


def make_config(**kwargs: Any) -> MultiConfig:
    own = {f.name for f in fields(MultiConfig)} - {"routing"}
    routing_fields = set(rt.RoutingConfig.__dataclass_fields__) - set(ROUTER_ONLY_FIELDS)
    router_only = sorted(set(kwargs) & set(ROUTER_ONLY_FIELDS))
    if router_only:
        raise TypeError(f"multi: {', '.join(router_only)} (Routing-v0's TTFT tail bound in its reward and score, or "
                        "its imitation teacher) is not used by the multi-agent cluster, whose score is slo_attainment")
    unknown = set(kwargs) - own - routing_fields
    if unknown:
        raise TypeError(f"multi: unknown config field(s) {sorted(unknown)}; known: "
                        f"{', '.join(sorted(own | routing_fields))}")
    rcfg = config_check.make_config(rt.RoutingConfig, None, {k: v for k, v in kwargs.items() if k in routing_fields},
                                    "multi")
    rcfg = replace(rcfg, load=rcfg.loads(), trace_params=tuple(dict(rcfg.trace_params).items()))
    rcfg.validate()
    if rcfg.workloads:
        raise ValueError(f"multi: workloads (a workload mixture) is not supported by the multi-agent cluster yet; "
                         f"got workloads={rcfg.workloads!r}; pass one trace")
    cfg = config_check.make_config(MultiConfig, MultiConfig(routing=rcfg), {k: v for k, v in kwargs.items() if k in own},
                                   "multi")
    cfg.validate()
    return cfg


def memory_bytes(num_envs: int, replicas: int, queue_slots: int, window_requests: int, n_routers: int,
                 candidates: int) -> int:
    """A lower bound on the bytes a batch of ``num_envs`` clusters takes: the cluster state
    (``state.allocate_bytes``), each router's observation [E, G + replicas x F] float32 and load reports
    [E, replicas, N_REPORTED] float64, each replica's admission observation [E, n_obs(candidates)] float32, and
    both observation spaces' bounds (10 bytes a feature)."""
    E, R, J = num_envs, replicas, n_routers
    router = rt.observation_size(R)
    admission = kva.observation_size(candidates)
    return (S.allocate_bytes(E, R, queue_slots, window_requests) + J * E * (4 * router + 8 * R * RK.N_REPORTED)
            + 4 * R * E * admission + 10 * (router + admission))


class MultiCluster:
    """E clusters stepped by one kernel call; observations, masks and actions per role."""

    def __init__(self, num_envs: int, seed: int | None = None, **kwargs: Any):
        cfg = make_config(**kwargs)
        self.config, rc = cfg, cfg.routing
        if not is_integer(num_envs) or num_envs < 1:  # 0 was allocate's 'n_envs ... must be >= 1'
            raise ValueError(f"multi: num_envs must be an integer >= 1, got {num_envs!r}")
        config_check.check_sizes("multi", {"num_envs": num_envs, "replicas": rc.replicas, "queue_slots": rc.queue_slots,
                                           "window_requests": rc.window_requests, "n_routers": cfg.n_routers,
                                           "candidates": cfg.candidates}, memory_bytes, "the batch's arrays")
        self.scenario = sc = rt.build_scenario(rc)
        rt.check_levels("multi", rc, sc)
        self.num_envs = E = num_envs
        self.R, self.J, self.K = R, J, K = rc.replicas, cfg.n_routers, cfg.candidates
        self.n_agents = {"router": J, "admission": R, "autoscaler": 1}
        self.cold_start = float(cfg.cold_start_s if cfg.cold_start_s is not None else
                                hwmodels.cold_start_time(rc.model, rc.gpu, rc.tp))
        self.dollars_per_replica_s = hwmodels.price_per_gpu_hour(rc.gpu) * rc.tp / 3600.0
        history, _ = load_split(replace(rc, trace=rt.DEFAULT_TRACE if rc.trace == "default" else rc.trace), "multi")
        self.hist_prior = kva.hist_prior(sc.engine, history)  # the requests the cluster's engine serves
        self.state = S.allocate(E, R, rc.queue_slots, rc.window_requests, sc.cache_entries,
                                max_window_gaps(sc.workload))
        self.n_obs = {"router": rt.observation_size(R),
                      "admission": kva.observation_size(K),
                      "autoscaler": MK.N_AS}
        self.n_act = {"router": R, "admission": kva.N_ACTIONS, "autoscaler": 2 * cfg.max_step + 1}
        f32 = np.float32
        self.r_obs = np.zeros((J, E, self.n_obs["router"]), f32)
        self.r_mask = np.ones((J, E, R), np.bool_)
        self.a_obs = np.zeros((R, E, self.n_obs["admission"]), f32)
        self.a_mask = np.ones((R, E, kva.N_ACTIONS), np.bool_)
        self.s_obs = np.zeros((E, MK.N_AS), f32)
        self.s_mask = np.ones((E, self.n_act["autoscaler"]), np.bool_)
        self.r_act = np.zeros((E, J), np.int64)
        self.adm = np.full((E, R), kva.encode_action(len(kva.ADMIT_LEVELS) - 1,
                                                     kva.BUDGET_LEVELS.index(rc.budget), False, 0), np.int64)
        self.s_act = np.full(E, cfg.max_step, np.int64)
        self.admit_levels = np.array(kva.ADMIT_LEVELS, np.int64)
        self.budget_levels = np.array(kva.BUDGET_LEVELS, np.int64)
        self.life = np.zeros((E, R), np.int8)
        self.ready_at = np.zeros((E, R))
        self.up = np.zeros((E, R), f32)
        self.bill_t = np.zeros(E)
        self.billed_s = np.zeros(E)
        self.control = np.zeros(E, np.bool_)
        self.next_control = np.zeros(E)
        self.arrivals = np.zeros(E, np.int64)
        self.missed_ctl = np.zeros(E, np.int64)
        self.last_rate = np.zeros(E)
        self.last_missed = np.zeros(E)
        self.ttft_ema = np.zeros((E, R))
        self.busy = np.zeros((E, R))
        self.rsnap = np.zeros((J, E, R, RK.N_REPORTED))
        self.rsnap_t = np.full((J, E), -np.inf)
        self.rsent = np.zeros((J, E, R), np.int64)
        self.rep_slo = np.zeros((E, R))
        self.rerouted = np.zeros(E, np.int64)
        self.slo_rew = np.zeros(E)
        self.cost = np.zeros(E)
        self.terminated = np.zeros(E, np.bool_)
        self.truncated = np.zeros(E, np.bool_)
        self.returns = np.zeros(E)
        self.lengths = np.zeros(E, np.int64)
        self._started = np.zeros(E, np.int64)
        self._loads = np.zeros(E)
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Env e's generator becomes ``default_rng(seed + e)`` (as in every native VecEnv) and the
        episode counters restart; None: fresh entropy. ``ValueError`` naming ``seed`` unless None or an
        integer >= 0 (``envs.native_vec.check_seed``)."""
        seed = check_seed(seed, "multi")
        self._rngs = [np.random.default_rng(None if seed is None else seed + e) for e in range(self.num_envs)]
        self._started[:] = 0

    # --- per-role views
    def obs(self, role: str) -> np.ndarray:
        """[E, n_agents, n_obs] (a copy)."""
        if role == "router":
            return self.r_obs.transpose(1, 0, 2).copy()
        if role == "admission":
            return self.a_obs.transpose(1, 0, 2).copy()
        return self.s_obs[:, None, :].copy()

    def masks(self, role: str) -> np.ndarray:
        if role == "router":
            return self.r_mask.transpose(1, 0, 2).copy()
        if role == "admission":
            return self.a_mask.transpose(1, 0, 2).copy()
        return self.s_mask[:, None, :].copy()

    def act_with(self, policies: dict[str, Any]) -> None:
        """Sets each role's actions from its policy (role -> object with ``act(obs [E * n, obs_dim],
        mask [E * n, n_actions]) -> actions [E * n]``) on the current observations and masks."""
        for r, pol in policies.items():
            n = self.n_agents[r]
            a = pol.act(self.obs(r).reshape(self.num_envs * n, -1), self.masks(r).reshape(self.num_envs * n, -1))
            self.set_actions(r, np.asarray(a).reshape(self.num_envs, n).astype(np.int64))

    def set_actions(self, role: str, actions: np.ndarray) -> None:
        """``actions`` [E, n_agents] of one role (validated)."""
        a = np.asarray(actions)
        shape = (self.num_envs, self.n_agents[role])
        if a.shape != shape or a.dtype.kind not in "iu":
            raise ValueError(f"multi: {role} actions must be integers in [0, {self.n_act[role]}) of shape "
                             f"{shape}, got {received(a)}")
        bad = (a < 0) | (a >= self.n_act[role])
        if bad.any():
            e, i = (int(x) for x in np.argwhere(bad)[0])
            raise ValueError(f"multi: {role} actions must be integers in [0, {self.n_act[role]}); env {e} agent {i} is "
                             f"{int(a[e, i])}")
        if role == "router":
            self.r_act[:] = a
        elif role == "admission":
            self.adm[:] = a
        else:
            self.s_act[:] = a[:, 0]

    # --- dynamics
    def reset(self, envs: np.ndarray | None = None, options: list[dict[str, Any]] | None = None) -> None:
        """Start the next episode of ``envs`` (default: all); ``options[e]`` (``{"window": w,
        "load": v}``) names env e's episode (``envs.native_vec.draw_episode``). ``ValueError`` for an unknown
        key or value, before any env draws or resets."""
        envs = np.arange(self.num_envs) if envs is None else np.asarray(envs)
        cfg, rc, sc = self.config, self.config.routing, self.scenario
        with draws_undone_on_error(self._rngs, self._started):  # a refused option moves no generator
            windows, scales, loads = rt.episode_draws("multi", rc, sc, self._rngs, envs, self._started,
                                                      self.num_envs, options)
        self._loads[envs] = loads
        n0 = rc.replicas if cfg.initial_replicas is None else cfg.initial_replicas
        MK.reset_all(self.state, sc.workload, sc.engine, envs.astype(np.int64), windows, scales, n0,
                     self.life, self.ready_at, self.up, self.bill_t, self.billed_s, self.control,
                     self.next_control, self.arrivals, self.missed_ctl, self.last_rate, self.last_missed,
                     sc.replica_capacity_rps, rc.stale_s, rc.hash_blocks, sc.sec_per_prefill_token,
                     self.ttft_ema, self.busy, self.rsnap, self.rsnap_t, self.rsent, self.rerouted, self.K,
                     self.r_obs, self.r_mask, self.a_obs, self.a_mask, self.admit_levels,
                     len(kva.BUDGET_LEVELS), self.s_obs, self.s_mask, self.hist_prior, cfg.max_step,
                     cfg.min_replicas)
        self.returns[envs] = 0.0
        self.lengths[envs] = 0

    def step(self) -> np.ndarray:
        """Apply the actions set for every role; returns the shared reward [E]."""
        cfg, rc, sc = self.config, self.config.routing, self.scenario
        billed0 = self.billed_s.copy()
        MK.step_all(self.state, sc.workload, sc.engine, self.r_act, self.adm, self.s_act, self.admit_levels,
                    self.budget_levels, self.life, self.ready_at, self.up, self.bill_t, self.billed_s,
                    self.control, self.next_control, cfg.interval_s, self.cold_start, cfg.min_replicas,
                    cfg.max_step, rc.drain_s, self.arrivals, self.missed_ctl, self.last_rate,
                    self.last_missed, sc.replica_capacity_rps, rc.stale_s, rc.hash_blocks,
                    sc.sec_per_prefill_token, self.ttft_ema, self.busy, self.rsnap, self.rsnap_t, self.rsent,
                    self.rep_slo, self.rerouted, self.K, self.r_obs, self.r_mask, self.a_obs, self.a_mask,
                    self.s_obs, self.s_mask, self.slo_rew, self.terminated, self.truncated)
        self.cost[:] = (self.billed_s - billed0) * self.dollars_per_replica_s
        reward = self.slo_rew - cfg.cost_weight * self.cost
        self.returns += reward
        self.lengths += 1
        return reward

    def done(self) -> np.ndarray:
        return self.terminated | self.truncated

    def terms(self, e: int) -> dict[str, Any]:
        """Per-agent reward terms of env ``e``'s last step."""
        return {"slo": float(self.slo_rew[e]), "cost": -self.config.cost_weight * float(self.cost[e]),
                "replica_slo": self.rep_slo[e].copy()}

    def episode_metrics(self, e: int) -> dict[str, float]:
        extra = {"cost_usd": float(self.billed_s[e] * self.dollars_per_replica_s),
                 "replica_hours": float(self.billed_s[e] / 3600.0), "rerouted": float(self.rerouted[e]),
                 "return": float(self.returns[e])}
        if self.config.routing.rate_scale is None:
            extra["load"] = float(self._loads[e])
        return rt.cluster_metrics(self.state, self.scenario, self.busy, e, extra)


def role_spaces(core: MultiCluster, role: str) -> tuple[spaces.Box, spaces.Discrete]:
    return (spaces.Box(-np.inf, np.inf, (core.n_obs[role],), np.float32), spaces.Discrete(core.n_act[role]))


def agent_names(core: MultiCluster) -> list[tuple[str, str, int]]:
    """(agent name, role, index within the role), routers first."""
    out = [(f"router_{j}", "router", j) for j in range(core.J)]
    out += [(f"admission_{r}", "admission", r) for r in range(core.R)]
    return out + [("autoscaler", "autoscaler", 0)]


class MultiClusterEnv(ParallelEnv):
    """PettingZoo view (one cluster) of :class:`MultiCluster`; masks in ``infos[a]["action_mask"]``."""

    metadata: ClassVar[dict] = {"render_modes": [], "name": "servegym_multi_cluster_v0"}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        # PettingZoo's constructors take render_mode (None was an unknown config field); none is rendered
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"], "multi")
        self.core = MultiCluster(1, **kwargs)
        self._names = agent_names(self.core)
        self.possible_agents = [n for n, _, _ in self._names]
        self._role = {n: (role, i) for n, role, i in self._names}
        self._spaces = {role: role_spaces(self.core, role) for role in ROLES}
        self.agents: list[str] = []

    @functools.cache  # noqa: B019 (spaces must be the same objects every call)
    def observation_space(self, agent: str) -> spaces.Box:
        return self._spaces[self._role[agent][0]][0]

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Discrete:
        return self._spaces[self._role[agent][0]][1]

    def _views(self):
        obs, infos = {}, {}
        per = {role: (self.core.obs(role)[0], self.core.masks(role)[0]) for role in ROLES}
        terms = self.core.terms(0)
        for n, role, i in self._names:
            obs[n] = per[role][0][i]
            t = {"slo": terms["slo"], "cost": terms["cost"]}
            if role == "admission":
                t["replica_slo"] = float(terms["replica_slo"][i])
            infos[n] = {"action_mask": per[role][1][i].astype(np.int8), "terms": t}
        return obs, infos

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.core.seed(seed)
        self.core.reset(options=[episode_options("multi", options, "load")])
        self.core.slo_rew[:] = 0.0
        self.core.cost[:] = 0.0
        self.core.rep_slo[:] = 0.0
        self.agents = list(self.possible_agents)
        return self._views()

    def step(self, actions: dict[str, int]):
        if not self.agents:
            raise RuntimeError("multi: step() before reset() or after the episode ended; call reset()")
        if not isinstance(actions, Mapping):  # None was "'NoneType' object is not iterable"
            raise TypeError(f"multi: step(actions) takes a dict of agent name -> action, got "
                            f"{type(actions).__name__} {actions!r:.80}")
        missing = set(self.agents) - set(actions)
        if missing:
            raise ValueError(f"multi: no action for {sorted(missing)}")
        unknown = set(actions) - set(self.agents)
        if unknown:  # a misspelt or finished agent's action would be dropped unseen
            raise ValueError(f"multi: actions for agents not in this episode: {sorted(unknown)} "
                             f"(agents: {', '.join(self.agents)})")
        for role in ROLES:
            names = [n for n, r, _ in self._names if r == role]
            self.core.set_actions(role, np.array([[actions[n] for n in names]]))
        reward = float(self.core.step()[0])
        obs, infos = self._views()
        term, trunc = bool(self.core.terminated[0]), bool(self.core.truncated[0])
        if term or trunc:
            m = self.core.episode_metrics(0)
            for n in infos:
                infos[n]["metrics"] = m
        rewards = {n: reward for n in self.agents}
        terms = {n: term for n in self.agents}
        truncs = {n: trunc for n in self.agents}
        if term or trunc:
            self.agents = []
        return obs, rewards, terms, truncs, infos



def parallel_env(render_mode: str | None = None, **kwargs: Any) -> MultiClusterEnv:
    """PettingZoo's module-level factory of the multi-agent cluster (``MultiConfig`` fields and
    ``RoutingConfig`` fields as keyword arguments; ``render_mode``: None, the only mode, as
    ``metadata["render_modes"]`` is empty; another is a ``ValueError``)."""
    return MultiClusterEnv(render_mode=render_mode, **kwargs)

class RoleView:
    """What a single-agent policy of ``role`` is built from: the role's spaces, a batch size and
    the attributes its heuristics read (KVAdmission's ``K``/``scenario``/``config``)."""

    def __init__(self, core: MultiCluster, role: str):
        self.observation_space, self.action_space = role_spaces(core, role)
        self.num_envs = core.num_envs * core.n_agents[role]
        self.K = core.K
        self.scenario = core.scenario
        self.config = core.config.routing
        self.interval_s = core.config.interval_s


RolePolicy = Callable[[RoleView], Any]


class RoleVecEnv(SingleObjectVecEnv):
    """SB3 VecEnv over E clusters x the agents of ``role`` (parameter sharing): one policy acts
    for every agent of the role; the other roles are played by ``others`` (role -> factory of a
    batched Policy taking a :class:`RoleView`, e.g. ``agents.heuristics.multi.team()``; a role
    missing from it raises ``KeyError``).
    Reward: the shared one (``reward="shared"``) or the agent's own term (``"replica_slo"`` for
    admission controllers)."""

    def __init__(self, num_envs: int, role: str = "router", seed: int | None = None, *,
                 others: dict[str, RolePolicy], reward: str = "shared", **kwargs: Any):
        if role not in ROLES:
            raise ValueError(f"multi: role must be one of {ROLES}, got {role!r}")
        if reward not in ("shared", "replica_slo") or (reward == "replica_slo" and role != "admission"):
            raise ValueError(f"multi: reward must be 'shared' (or 'replica_slo' for admission), got {reward!r}")
        self.core = MultiCluster(num_envs, seed=seed, **kwargs)
        self.role, self.reward_kind = role, reward
        self.n = self.core.n_agents[role]
        obs_space, act_space = role_spaces(self.core, role)
        self.render_mode = None
        super().__init__(num_envs * self.n, obs_space, act_space)
        self.others = {r: others[r](RoleView(self.core, r)) for r in ROLES if r != role}
        self._actions = np.zeros((num_envs, self.n), np.int64)
        self._started = False
        self.table_metrics = rt.RoutingVecEnv.table_metrics

    def _flat(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(self.num_envs, *x.shape[2:])

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Cluster e's generator becomes ``default_rng(seed + e)`` (``MultiCluster.seed``); returns each agent's
        cluster seed (agent k is in cluster k // agents per cluster)."""
        self.core.seed(seed)
        return [None if seed is None else seed + k // self.n for k in range(self.num_envs)]

    def reset(self) -> np.ndarray:
        """Every cluster's next episode, as SB3's ``set_options`` name them (``{"window": w, "load": v}``, per
        agent; the agents of one cluster share its episode, so theirs must agree; was silently ignored); an
        unknown key or value, or different options for one cluster's agents, is a ``ValueError``."""
        opts = [dict(o or {}) for o in self._options]
        self._reset_options()
        per_cluster = []
        for e in range(self.core.num_envs):
            mine = opts[e * self.n:(e + 1) * self.n]
            if any(o != mine[0] for o in mine[1:]):
                raise ValueError(f"multi {self.role}: set_options gave the {self.n} agents of cluster {e} (indices "
                                 f"{e * self.n}..{(e + 1) * self.n - 1}) different options {mine}; they share one "
                                 "episode")
            per_cluster.append(mine[0])
        self.core.reset(options=per_cluster)
        self._started = True
        return self._flat(self.core.obs(self.role))

    def step_async(self, actions: np.ndarray) -> None:
        if not self._started:
            raise RuntimeError("multi: step() before reset(); call reset() first")
        self._actions[:] = check_actions(actions, (self.num_envs,), int(self.action_space.n),
                                         f"multi {self.role}").reshape(self.core.num_envs, self.n)

    def step_wait(self):
        self.core.set_actions(self.role, self._actions)
        self.core.act_with(self.others)
        shared = self.core.step()
        if self.reward_kind == "shared":
            rew = np.repeat(shared, self.n)
        else:
            rew = self.core.rep_slo.reshape(-1).copy()
        done_e = self.core.done()
        dones = np.repeat(done_e, self.n)
        obs = self._flat(self.core.obs(self.role))
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        finished = np.flatnonzero(done_e)
        for e in finished:
            m = self.core.episode_metrics(e)
            for i in range(self.n):
                k = e * self.n + i
                infos[k] = {"terminal_observation": obs[k].copy(),
                            "TimeLimit.truncated": bool(self.core.truncated[e] and not self.core.terminated[e])}
            # Episode statistics once per cluster (the first agent), so loggers count it once.
            infos[e * self.n]["episode"] = {"r": float(self.core.returns[e]), "l": int(self.core.lengths[e])}
            infos[e * self.n]["metrics"] = m
        if finished.size:
            self.core.reset(finished)
            obs = self._flat(self.core.obs(self.role))
        return obs, rew.astype(np.float32), dones, infos

    def action_masks(self) -> np.ndarray:
        return self._flat(self.core.masks(self.role))

    # --- the routers' privileged teacher (imitation targets; never part of the observation)
    def teacher_actions(self) -> np.ndarray:
        """Routing-v0's privileged teacher (``envs.routing.teacher``, rule ``"marginal"``) for every
        router's pending request [num_envs] (int64; agent k = cluster k // n_routers, router k % n_routers):
        each replica replayed alone from now with and without router j's request (the step's j-th
        arrival) on the true output lengths, under vLLM FCFS, over ``teacher_horizon_s`` (Routing-v0's
        default 20 s), charging TTFT beyond Routing-v0's tail bound (5 x the TTFT SLO, penalty 2.0) as its
        teacher does. Approximations in the cluster: routers of one step are labelled independently (router
        j's replay does not hold routers 0..j-1's requests of the same step), and the replay runs vLLM FCFS
        whatever knobs the admission controllers hold. Router only: ``ValueError`` for another role."""
        out = self._teacher_outcomes()
        mask = self.action_masks()
        return np.array([T.choose(out[k], mask[k], "marginal") for k in range(self.num_envs)], np.int64)

    def teacher_targets(self) -> np.ndarray:
        """Every replica the teacher accepts per router [num_envs, R] (bool): its best reward delta
        (``envs.routing.teacher.targets`` with Routing-v0's default slack); see :meth:`teacher_actions`."""
        out = self._teacher_outcomes()
        mask = self.action_masks()
        rc = self.core.config.routing
        slack_s = float(rc.teacher_ttft_slack) * self.core.scenario.engine.slo_ttft
        return np.stack([T.targets(out[k], mask[k], slack_s) for k in range(self.num_envs)])

    def _teacher_outcomes(self) -> np.ndarray:
        """``envs.routing.teacher.play_candidates``' rows per router [num_envs, 2R, 2], kept until the
        batch steps. A router without a request this step (the window's end) gets all-zero rows."""
        if self.role != "router":
            raise ValueError(f"multi: the privileged teacher labels routers only, not {self.role!r}")
        core = self.core
        st = core.state
        key = (st.window.tobytes(), st.next_arrival.tobytes(), st.clock.tobytes())
        cached = getattr(self, "_teacher_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        rc, sc, R, J = core.config.routing, core.scenario, core.R, core.J
        if getattr(self, "_teacher_rows", None) is None:
            self._teacher_rows = (T.scratch_like(st), np.zeros((2 * R, R)))
        rows, busy = self._teacher_rows
        bound_s = float(rc.ttft_bound_x) * sc.engine.slo_ttft
        out = np.zeros((self.num_envs, 2 * R, 2))
        for e in range(core.num_envs):
            n = int(sc.workload.n_requests[st.window[e]])
            for j in range(J):
                i = int(st.next_arrival[e]) + j
                if i >= n:
                    continue
                T.load_rows(rows, st, e)
                T.play_candidates(rows, sc.workload, sc.engine, i, rc.budget, float(rc.teacher_horizon_s), False,
                                  bound_s, float(rc.ttft_bound_penalty), busy, out[e * J + j])
        self._teacher_cache = (key, out)
        return out


def run_team(num_envs: int, policies: dict[str, RolePolicy], seed: int = 0,
             **kwargs: Any) -> list[dict[str, float]]:
    """Every env's first episode with each role played by ``policies`` (role -> factory of a
    policy from that role's ``RoleView``, e.g. ``agents.heuristics.multi.team()``); returns the
    episodes' metrics."""
    core = MultiCluster(num_envs, seed=seed, **kwargs)
    pols = {r: f(RoleView(core, r)) for r, f in policies.items()}
    core.reset()
    out: list[dict[str, float] | None] = [None] * num_envs
    while any(m is None for m in out):
        core.act_with(pols)
        core.step()
        d = core.done()
        for e in np.flatnonzero(d):
            if out[e] is None:
                out[e] = core.episode_metrics(e)
        if d.any():
            core.reset(np.flatnonzero(d))
    return [m for m in out if m is not None]
