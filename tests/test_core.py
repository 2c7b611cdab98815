"""The cluster model: invariants under random input, analytic checks, preemption, prefix reuse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_trace
from envs import kv_admission as kva
from envs.core.engine import step_time
from envs.core.invariants import violations
from envs.core.replica import ORDER_FCFS
from traces.trace import Trace, TraceMeta

FCFS_8192 = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, 2, False, ORDER_FCFS)


def _vec(trace, n_envs=1, **kw):
    kw.setdefault("split", "all")
    kw.setdefault("window_order", "sequential")
    return kva.KVAdmissionVecEnv(n_envs, seed=0, trace=trace, **kw)


def _run(vec, action_fn, max_steps=100_000):
    """Step until every env finished one episode; returns per-env metrics and step count."""
    obs = vec.reset()
    done_once = np.zeros(vec.num_envs, bool)
    metrics = [None] * vec.num_envs
    steps = 0
    while not done_once.all() and steps < max_steps:
        obs, _, dones, infos = vec.step(action_fn(obs, vec.action_masks()))
        for e in np.flatnonzero(dones & ~done_once):
            metrics[e] = infos[e]["metrics"]
        done_once |= dones
        steps += 1
    assert done_once.all(), "episodes did not end"
    return metrics, steps


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    rate=st.floats(0.5, 200.0),
    capacity=st.integers(80, 400),
    queue_slots=st.integers(8, 64),
    defer_bias=st.floats(0, 1),
)
def test_invariants_hold_under_random_traces_and_actions(seed, rate, capacity, queue_slots, defer_bias):
    rng = np.random.default_rng(seed)
    n = 48
    prompt = rng.integers(1, 600, n)
    output = rng.integers(1, 300, n)
    trace = Trace(
        np.sort(rng.exponential(1 / rate, n).cumsum()), prompt.astype(np.int64),
        output.astype(np.int64), TraceMeta("random", "hypothesis", "n/a"),
    )
    vec = _vec(trace, 3, window_requests=16, capacity_blocks=capacity, queue_slots=queue_slots,
               window_order="random", drain_s=30.0)
    vec.seed(seed)
    vec.reset()
    clock = vec.state.clock.copy()
    eng = vec.scenario.engine
    for _ in range(400):
        mask = vec.action_masks()
        keys = rng.random(mask.shape)
        keys[~mask] = -1
        a = keys.argmax(1)
        _, _, dones, infos = vec.step(a)
        # Check the state of envs that did not just auto-reset.
        bad = violations(vec.state, eng.capacity_blocks, eng.block_size)
        assert not bad, bad
        live = ~dones
        assert np.all(vec.state.clock[live] >= clock[live]), "time ran backward"
        clock = vec.state.clock.copy()
        for e in np.flatnonzero(dones):
            m = infos[e]["metrics"]
            assert m["finished"] + m["dropped"] + m["unfinished"] == m["requests"]


def test_low_load_ttft_equals_hwmodels_prefill_time():
    prompt, output = 1000, 4
    trace = make_trace(64, rate=0.01, prompt=prompt, output=output, poisson=False)
    vec = _vec(trace, window_requests=32, rate_scale=1.0)
    _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    c = vec.scenario.engine.coeffs
    prefill = step_time(c, float(prompt), prompt * (prompt + 1) / 2.0, 0.0, 0.0)
    decodes = sum(step_time(c, 0.0, 0.0, 1.0, float(prompt + k)) for k in range(1, output))
    ttft = vec.state.ttft[0]
    np.testing.assert_allclose(ttft, prefill, rtol=1e-9)
    np.testing.assert_allclose(vec.state.e2e[0], prefill + decodes, rtol=1e-9)
    assert vec.state.slo_met[0].all()


def test_moderate_load_matches_md1_queue():
    """Output 1 and one admission per iteration make the replica an M/D/1 queue with service
    time D = the prefill iteration; mean TTFT = D + rho * D / (2 (1 - rho)) (Pollaczek-Khinchine)."""
    prompt = 512
    trace = make_trace(16_000, rate=1.0, prompt=prompt, output=1, seed=3)
    admit_one = kva.encode_action(1, 1, False, ORDER_FCFS)
    probe = _vec(trace, window_requests=4000, rate_scale=1.0)
    D = step_time(probe.scenario.engine.coeffs, float(prompt), prompt * (prompt + 1) / 2.0, 0.0, 0.0)
    rho = 0.6
    vec = _vec(trace, 4, window_requests=4000, rate_scale=rho / D, queue_slots=4096)
    _run(vec, lambda o, m: np.full(len(o), admit_one))
    measured = np.nanmean(vec.state.ttft)
    expected = D + rho * D / (2 * (1 - rho))
    assert measured == pytest.approx(expected, rel=0.08), (measured, expected)


def test_kv_shortage_preempts_newest_and_everything_still_finishes():
    trace = make_trace(64, rate=50.0, prompt=300, output=400, seed=1)
    vec = _vec(trace, 2, window_requests=32, capacity_blocks=150)
    metrics, _ = _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    for m in metrics:
        assert m["preemptions"] > 0 and m["recomputed_tokens"] > 0
        assert m["finished"] == m["requests"]
    # Defer instead of preempting: fewer preemptions on the same windows.
    defer = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, 2, True, ORDER_FCFS)
    vec2 = _vec(trace, 2, window_requests=32, capacity_blocks=150)
    metrics2, _ = _run(vec2, lambda o, m: np.full(len(o), defer))
    assert sum(m["preemptions"] for m in metrics2) < sum(m["preemptions"] for m in metrics)
    assert all(m["finished"] == m["requests"] for m in metrics2)


def test_queue_overflow_drops_are_counted():
    trace = make_trace(64, rate=1000.0, prompt=2000, output=200, seed=2)
    vec = _vec(trace, window_requests=64, queue_slots=8)
    metrics, _ = _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    assert metrics[0]["dropped"] > 0
    assert metrics[0]["finished"] + metrics[0]["dropped"] == 64


def test_prefix_cache_reuses_shared_prefixes():
    """Requests sharing a 4-block prefix: after the first finishes, the rest skip its prefill."""
    n, bs = 40, 16
    ids, offs = [], [0]
    for i in range(n):
        chain = [0, 1, 2, 3] + [100 + i]  # shared system prompt + own block
        ids += chain
        offs.append(len(ids))
    trace = Trace(
        np.arange(n, dtype=np.float64) * 2.0, np.full(n, 5 * bs, np.int64), np.full(n, 8, np.int64),
        TraceMeta("shared-prefix", "tests", "n/a"), block_ids=np.array(ids, np.int64),
        block_offsets=np.array(offs, np.int64), block_size=bs,
    )
    vec = _vec(trace, window_requests=n, prefix_caching=True, rate_scale=1.0)
    metrics, _ = _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    m = metrics[0]
    assert m["block_hit_ratio"] == pytest.approx(4 * (n - 1) / (5 * n))
    assert m["token_hit_ratio"] == pytest.approx(4 * bs * (n - 1) / (5 * bs * n))
    ttft = vec.state.ttft[0]
    assert np.all(ttft[1:] < ttft[0])
    nocache = _vec(trace, window_requests=n, rate_scale=1.0)
    _run(nocache, lambda o, m: np.full(len(o), FCFS_8192))
    assert np.allclose(nocache.state.ttft[0], ttft[0])
    assert np.all(nocache.state.ttft[0][1:] > ttft[1:])
