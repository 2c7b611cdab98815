"""The multi-agent cluster's heuristic team (``envs.multi.env``) and its autoscaler heuristic.

Routers and admission controllers see exactly Routing-v0's and KVAdmission-v0's observations, so
their heuristics are those environments' own (``agents.heuristics.routing`` / ``.kv_admission``),
built from a ``RoleView``. The team: ``jsq`` routers (the best Routing-v0 heuristic on the
held-out Mooncake trace), ``vllm_fcfs`` admission (vLLM's own scheduler, what Routing-v0's
replicas run) and ``hpa`` for the autoscaler role.
"""

from __future__ import annotations

import numpy as np

from agents.heuristics import kv_admission as kvh
from agents.heuristics import routing as rth
from envs.multi import kernels as MK


def _f(name: str) -> int:
    return MK.AUTOSCALER_FEATURES.index(name)


class HPA:
    """Kubernetes Horizontal Pod Autoscaler ("Horizontal Pod Autoscaling", algorithm details,
    kubernetes.io; pkg/controller/podautoscaler/replica_calculator.go) on a requests/s-per-replica
    metric: desired = ceil(ready x metric / target), no change while |metric / target - 1| <= 0.1
    (tolerance), scale-down to the highest recommendation of the last 300 s (stabilisation window),
    replicas still starting count toward the current size; changes clipped to the role's
    +-max_step per control instant. The target is ``target_util`` (0.6) of one replica's measured
    capacity without prefix reuse (the observation's ``rate`` unit)."""

    name = "hpa"
    TOLERANCE = 0.1
    DOWN_WINDOW_S = 300.0

    def __init__(self, view, seed: int = 0, target_util: float = 0.6):
        self.n_act = int(view.action_space.n)
        self.max_step = (self.n_act - 1) // 2
        self.R = view.config.replicas
        self.target = target_util
        self.hist_len = max(round(self.DOWN_WINDOW_S / view.interval_s), 1)
        self.history = np.zeros((view.num_envs, self.hist_len))

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        E = obs.shape[0]
        if self.history.shape[0] != E:
            self.history = np.zeros((E, self.hist_len))
        serving = np.rint(obs[:, _f("serving")] * self.R)
        current = serving + np.rint(obs[:, _f("starting")] * self.R)
        rate = obs[:, _f("rate")]  # arrivals/s in replica capacities
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(serving > 0, rate / (serving * self.target), np.inf)
        desired = np.where(np.abs(ratio - 1.0) <= self.TOLERANCE, current, np.ceil(rate / self.target))
        desired = np.clip(desired, 1, self.R)
        control = obs[:, _f("control")] > 0
        fresh = obs[:, _f("elapsed")] == 0.0
        self.history[fresh] = 0.0
        self.history[control] = np.roll(self.history[control], 1, axis=1)
        self.history[control, 0] = desired[control]
        stabilised = np.maximum(self.history.max(1), 1)
        target = np.where(desired >= current, desired, np.minimum(stabilised, current))
        delta = np.clip(target - current, -self.max_step, self.max_step).astype(np.int64)
        a = np.where(control, delta + self.max_step, self.max_step)
        if action_mask is not None:  # the fleet bounds: the largest legal step toward the target
            legal = action_mask[np.arange(E), a]
            a = np.where(legal, a, self.max_step)
        return a


def team() -> dict:
    """Role -> factory(RoleView) of the heuristic team."""
    return {"router": rth.JSQ, "admission": kvh.vllm_fcfs, "autoscaler": HPA}


ROLE_HEURISTICS = {
    "router": {"round_robin": rth.RoundRobin, "jsq": rth.JSQ, "p2c": rth.PowerOfTwo,
               "prefix_hash": rth.PrefixHash, "sglang_cache_aware": rth.SGLangCacheAware,
               "dualmap": rth.DualMap},
    "admission": {"vllm_fcfs": kvh.vllm_fcfs, "sarathi": kvh.sarathi, "conservative": kvh.conservative,
                  "past_future": kvh.past_future, "sjf": kvh.sjf},
    "autoscaler": {"hpa": HPA},
}
