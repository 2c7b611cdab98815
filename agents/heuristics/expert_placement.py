"""Heuristics, oracle and bound of servegym/ExpertPlacement-v0.

Each acts through the env's masked sub-steps (mode per layer; for custom, one sub-step per
redundant replica), so the evaluator drives them exactly as it drives a learned policy. The
placement algorithms themselves live in envs/expert_placement/algos.py (the env shows their
projections to every policy and uses EPLB for its clairvoyant reference).
"""

from __future__ import annotations

import numpy as np

from agents.policy_base import register_heuristics
from envs.expert_placement import kernels as K
from envs.expert_placement.env import ENV_ID


class _Mode:
    """The same mode on every layer at every rebalance; custom then fills every redundant slot by
    EPLB's greedy rule (the expert with the largest load per replica) in one sub-step."""

    def __init__(self, name: str, mode: int):
        self.name, self.mode = name, mode

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        a = np.full(obs.shape[0], self.mode)
        if action_mask is None:
            return a
        return np.where(action_mask[:, self.mode], a, K.FILL)


def round_robin(env, seed: int = 0) -> _Mode:
    """Static expert parallelism: slot p keeps logical expert p mod experts forever (vLLM's
    initial EPLB mapping; plain EP when there are no redundant slots). Never migrates."""
    return _Mode("round_robin", K.KEEP)


def lpt(env, seed: int = 0) -> _Mode:
    """Greedy longest-processing-time repacking (Graham 1969) of the current replicas by the last
    interval's load, each GPU keeping its slot count; no change to which experts are replicated."""
    return _Mode("lpt", K.LPT)


def eplb(env, seed: int = 0) -> _Mode:
    """DeepSeek EPLB (github.com/deepseek-ai/EPLB, eplb.rebalance_experts) on the last interval's
    load at every rebalance, as SGLang's periodic EPLB does: redundant slots to the experts with the
    largest load per replica, balanced packing, hierarchical (expert groups to nodes) when the
    model's expert groups are a multiple of the node count, else global."""
    return _Mode("eplb", K.EPLB)


def sticky_eplb(env, seed: int = 0) -> _Mode:
    """EPLB's greedy replication packed migration-aware (a replica stays on its GPU unless that
    would push the GPU past the mean load): this project's own heuristic, a reference for how much
    of a learned policy's gain comes from moving fewer experts."""
    return _Mode("sticky_eplb", K.CUSTOM)


class _Oracle(_Mode):
    """Privileged reference: the env plays it from the true load (``env.set_oracle``)."""

    def __init__(self, name: str, env, mode: int):
        super().__init__(name, mode)
        env.set_oracle(name)


def eplb_clairvoyant(env, seed: int = 0) -> _Oracle:
    """EPLB run on the next interval's true load (the env knows the load sequence): the score's
    100 reference. Not an upper bound: it still migrates what EPLB migrates."""
    return _Oracle("eplb_clairvoyant", env, K.EPLB)


def perfect_balance(env, seed: int = 0) -> _Oracle:
    """Lower bound on MoE time: every expert's tokens spread evenly over all GPUs with its weights
    read once, all-to-all equal to what each GPU sends, no migration."""
    return _Oracle("perfect_balance", env, K.KEEP)


register_heuristics(ENV_ID, {
    "round_robin": round_robin,
    "lpt": lpt,
    "eplb": eplb,
    "sticky_eplb": sticky_eplb,
    "eplb_clairvoyant": eplb_clairvoyant,
    "perfect_balance": perfect_balance,
})
