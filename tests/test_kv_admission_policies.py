"""KVAdmission heuristics behave as the systems they are named after, from obs and mask alone."""

from __future__ import annotations

import numpy as np
import pytest

from agents.heuristics import kv_admission as H
from agents.policy import heuristic_names, make_policy
from conftest import make_trace
from envs.kv_admission import env as kva
from envs.core.engine import step_time

TRACE = make_trace(4096, rate=20.0, prompt=np.arange(4096) * 37 % 1500 + 50,
                   output=np.arange(4096) * 53 % 600 + 5, seed=5)
ENV = kva.ENV_ID


def _vec(**kw):
    return kva.KVAdmissionVecEnv(4, seed=0, trace=TRACE, window_requests=128, **kw)


def test_every_named_heuristic_is_registered():
    assert set(heuristic_names(ENV)) == {"vllm_fcfs", "sarathi", "conservative", "past_future", "sjf"}


@pytest.mark.parametrize("name", ["vllm_fcfs", "sarathi", "conservative", "past_future", "sjf", "random"])
def test_heuristics_choose_legal_actions(name):
    vec = _vec(load=1.1)
    pol = make_policy(name, vec, ENV)
    obs = vec.reset()
    for _ in range(300):
        mask = vec.action_masks()
        a = pol.act(obs, mask)
        assert mask[np.arange(len(a)), a].all(), name
        obs, *_ = vec.step(a)


def test_vllm_fcfs_is_admit_all_8192_preempt_newest_fcfs():
    vec = _vec()
    obs = vec.reset()
    a = make_policy("vllm_fcfs", vec, ENV).act(obs, vec.action_masks())
    admit, budget, defer, order = kva.decode_action(int(a[0]))
    assert kva.BUDGET_LEVELS[budget] == 8192 and not defer and order == 0
    assert admit >= 1


def test_sarathi_budget_is_the_largest_meeting_the_tbt_slo():
    vec = _vec()
    pol = make_policy("sarathi", vec, ENV)
    _, budget, _, _ = kva.decode_action(pol.action)
    b = kva.BUDGET_LEVELS[budget]
    eng = vec.scenario.engine
    t = lambda x: step_time(eng.coeffs, float(x), x * (x + 1) / 2.0, 64.0, 64.0 * 2048)
    assert t(b) <= eng.slo_tpot or b == min(kva.BUDGET_LEVELS)
    larger = [x for x in kva.BUDGET_LEVELS if x > b]
    assert all(t(x) > eng.slo_tpot for x in larger)


def test_reservation_admits_less_than_vllm_under_pressure():
    """With KV scarce, reservation never admits past max_tokens capacity; vLLM admits all."""
    vec = _vec(load=1.1, capacity_blocks=400)
    cons = make_policy("conservative", vec, ENV)
    obs = vec.reset()
    for _ in range(200):
        mask = vec.action_masks()
        a = cons.act(obs, mask)
        res = H.candidate_feature(obs, "reserve_after", vec.K)
        present = H.candidate_feature(obs, "present", vec.K) > 0
        admit = np.array([kva.ADMIT_LEVELS[kva.decode_action(int(x))[0]] for x in a])
        running = obs[:, 2] > 0
        for e in range(len(a)):
            k = min(admit[e], present[e].sum())
            if running[e] and k > 0:
                assert res[e, k - 1] <= 1.0
        obs, *_ = vec.step(a)


def test_sjf_orders_by_predicted_bucket():
    vec = _vec()
    obs = vec.reset()
    a = make_policy("sjf", vec, ENV).act(obs, vec.action_masks())
    assert kva.decode_action(int(a[0]))[3] == 1


def test_unknown_policy_error_lists_known_names():
    vec = _vec()
    with pytest.raises(ValueError, match="vllm_fcfs"):
        make_policy("lru", vec, ENV)
