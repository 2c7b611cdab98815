"""Heuristics of servegym/KVAdmission-v0, each as the system it is named after schedules.

All act from the observation and mask only (the evaluator cannot tell them from a learned
policy); the features they need (reservation and Past-Future estimates per queue head) are
part of the observation every policy sees.
"""

from __future__ import annotations

import numpy as np

from agents.policy_base import first_legal, register_heuristics
from envs.kv_admission import env as kva
from envs.kv_admission import kernels as kern
from envs.core.capacity import VLLM_BUDGET

ENV_ID = kva.ENV_ID
_G = len(kern.GLOBAL_FEATURES)
_F = len(kern.CANDIDATE_FEATURES)
_ADMIT = np.array(kva.ADMIT_LEVELS)
_ALL = len(kva.ADMIT_LEVELS) - 1
_FCFS, _SJF = 0, 1


def _budget_index(tokens: int) -> int:
    return kva.BUDGET_LEVELS.index(tokens)


def candidate_feature(obs: np.ndarray, name: str, K: int) -> np.ndarray:
    """[E, K] values of one per-candidate feature."""
    f = kern.CANDIDATE_FEATURES.index(name)
    return obs[:, _G + f : _G + K * _F : _F]


def _admit_index_for(count: np.ndarray) -> np.ndarray:
    """Largest admit level that admits at most ``count`` requests."""
    return np.searchsorted(_ADMIT, count, side="right") - 1


class _Fixed:
    """Same admit/budget/preempt/order choice every iteration (vLLM, Sarathi-Serve, SJF)."""

    row_independent = True  # a function of each env's own mask (agents.policy_base.Policy)

    def __init__(self, name: str, admit: int, budget: int, defer: bool, order: int):
        self.name = name
        self.action = kva.encode_action(admit, _budget_index(budget), defer, order)

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        a = np.full(obs.shape[0], self.action)
        # "all" is masked only when fewer requests can start; the largest legal level is then
        # the same choice (it admits every admissible request).
        if action_mask is None:
            return a
        stride = len(kva.BUDGET_LEVELS) * 2 * kva.N_ORDERS
        cand = np.arange(len(kva.ADMIT_LEVELS))[None, :] * stride + (a % stride)[:, None]
        ok = action_mask[np.arange(len(a))[:, None], cand]
        largest_legal = (ok * np.arange(1, ok.shape[1] + 1)).argmax(1)
        return cand[np.arange(len(a)), largest_legal]


def vllm_fcfs(env, seed: int = 0) -> _Fixed:
    """vLLM: admit FCFS while KV blocks are free, 8192-token chunked-prefill budget (vLLM
    ``EngineArgs`` default max_num_batched_tokens for online serving on GPUs >= 70 GiB), and on a
    shortage preempt the newest running request by recompute (vLLM ``Scheduler``)."""
    return _Fixed("vllm_fcfs", _ALL, VLLM_BUDGET, False, _FCFS)


def sarathi(env, seed: int = 0) -> _Fixed:
    """Sarathi-Serve (Agrawal et al., OSDI'24): stall-free batching with chunked prefills under a
    fixed token budget, chosen once by profiling as the largest budget whose iteration still
    meets the TBT SLO (paper Sec. 4.3). Profiled here on the env's own step-time model with a
    decode batch of 64 requests at 2k context."""
    from envs.core.engine import step_time

    eng = env.scenario.engine
    best = min(kva.BUDGET_LEVELS)
    for b in sorted(kva.BUDGET_LEVELS):
        t = step_time(eng.coeffs, float(b), b * (b + 1) / 2.0, 64.0, 64.0 * 2048)
        if t <= eng.slo_tpot:
            best = b
    return _Fixed("sarathi", _ALL, best, False, _FCFS)


def sjf(env, seed: int = 0) -> _Fixed:
    """Shortest predicted job first: the queue ordered by the predicted output-length bucket
    (as length-predicting schedulers do, e.g. Qiu et al. 2024, "Efficient Interactive LLM
    Serving with Proxy Model-based Sequence Length Prediction"), vLLM's budget and preemption."""
    return _Fixed("sjf", _ALL, VLLM_BUDGET, False, _SJF)


class _Thresholded:
    """FCFS admission of the longest run of queue heads whose cumulative estimate fits."""

    row_independent = True  # a function of each env's own observation and mask

    def __init__(self, name: str, feature: str, K: int, limit: float = 1.0):
        self.name, self.feature, self.K, self.limit = name, feature, K, limit

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        est = candidate_feature(obs, self.feature, self.K)
        present = candidate_feature(obs, "present", self.K) > 0
        fits = (est <= self.limit) & present
        n_fit = np.where(fits.all(1), self.K, fits.argmin(1))
        n_queued = present.sum(1)
        admit = _admit_index_for(n_fit)
        # Every queued request fits: the largest level admits them all.
        admit = np.where((n_fit == n_queued) & (n_fit > 0), _ALL, admit)
        a = kva.encode_action(admit, _budget_index(VLLM_BUDGET), False, _FCFS)
        # Nothing fits while nothing runs: the oldest request must start (an idle engine
        # would wait forever), as both systems do.
        fallback = kva.encode_action(1, _budget_index(VLLM_BUDGET), False, _FCFS)
        return first_legal(np.asarray(a), action_mask, np.full(obs.shape[0], fallback))


def conservative(env, seed: int = 0) -> _Thresholded:
    """Reservation at admission: admit only if every running request and the new one can reach
    max_tokens without preemption (Orca/FasterTransformer-style max allocation, the policy vLLM's
    PagedAttention paper, Kwon et al. SOSP'23 Sec. 2.3, compares against)."""
    return _Thresholded("conservative", "reserve_after", env.K)


def past_future(env, seed: int = 0) -> _Thresholded:
    """Past-Future scheduler (Gong et al., "Past-Future Scheduler for LLM Serving under SLA
    Guarantees", ASPLOS'25; LightLLM): predict each request's remaining output from the history
    of output lengths, admit while the predicted future peak KV stays within capacity."""
    return _Thresholded("past_future", "pf_after", env.K)


register_heuristics(
    ENV_ID,
    {
        "vllm_fcfs": vllm_fcfs,
        "sarathi": sarathi,
        "conservative": conservative,
        "past_future": past_future,
        "sjf": sjf,
    },
)
