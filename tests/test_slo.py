"""The SLO check (MLPerf Inference / DistServe TTFT + TPOT, and the p99-gap alternative), the
TPOT and episode-TBT metrics, early miss marking, and the SLO data file."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import make_trace
from envs.kv_admission import env as kva
from envs import slo
from envs.core import state as S
from envs.core.engine import EngineSpec, step_time
from envs.core.replica import ORDER_FCFS, _push_gap, _push_gaps
from envs.metrics import percentile
from traces.trace import Trace, TraceMeta

FCFS_8192 = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, 2, False, ORDER_FCFS)


def _episode(trace, **kw):
    """One episode of every env under vLLM FCFS (8192 budget); (metrics, records, return) of env 0."""
    vec = kva.KVAdmissionVecEnv(1, seed=0, trace=trace, split="all", window_order="sequential",
                                rate_scale=1.0, **kw)
    vec.reset()
    for _ in range(100_000):
        _, _, dones, infos = vec.step(np.array([FCFS_8192]))
        if dones[0]:
            return infos[0]["metrics"], infos[0]["requests"], infos[0]["episode"]["r"]
    raise AssertionError("episode did not end")


def test_tpot_is_the_mean_gap_after_the_first_token():
    prompt, output = 1000, 5
    trace = make_trace(16, rate=0.01, prompt=prompt, output=output, poisson=False)
    m, rec, _ = _episode(trace, window_requests=8)
    c = EngineSpec().build().coeffs
    decodes = [step_time(c, 0.0, 0.0, 1.0, float(prompt + k)) for k in range(1, output)]
    np.testing.assert_allclose(rec["tpot"], sum(decodes) / (output - 1), rtol=1e-9)
    np.testing.assert_allclose(rec["tpot"], (rec["e2e"] - rec["ttft"]) / (output - 1), rtol=1e-12)
    assert m["tpot_p50_s"] == pytest.approx(sum(decodes) / (output - 1), rel=1e-9)
    assert m["tbt_p99_s"] == pytest.approx(max(decodes), rel=1e-6)  # low load: the longest decode step


def _long_gap_trace():
    """A decodes 100 tokens; B's 8192-token prompt arrives mid-way and its prefill iteration
    stalls A's next token (vLLM V1 runs decodes and prefill chunks in one iteration)."""
    return Trace(np.array([0.0, 0.3]), np.array([16, 8192], np.int64), np.array([100, 2], np.int64),
                 TraceMeta("gap", "tests", "n/a"))


@pytest.mark.parametrize("metric,a_met", [("tpot", True), ("p99_tbt", False)])
def test_one_long_gap_fails_the_p99_gap_check_but_not_tpot(metric, a_met):
    c = EngineSpec().build().coeffs
    stall = step_time(c, 8192.0, 8192 * 8193 / 2.0, 1.0, 100.0)
    assert stall > 0.1  # the gap B's prefill puts into A's stream exceeds the 100 ms limit
    m, rec, ret = _episode(_long_gap_trace(), window_requests=2, slo_metric=metric)
    assert rec["tbt_p99"][0] > 0.1 and rec["tpot"][0] < 0.1
    assert bool(rec["slo_met"][0]) is a_met
    met = int(rec["slo_met"].sum())
    # +1 per met, -1 per missed (marked once, when it became certain): no request counted twice.
    assert ret == pytest.approx(2 * met - 2)
    assert m["slo_attainment"] == met / 2


@pytest.mark.parametrize("metric", slo.SLO_METRICS)
def test_early_misses_and_final_checks_agree_under_load(metric):
    """Tight limits and overload: many requests are marked missed before they finish; the
    return must still be 2 x met - requests (each request counted once) and no preemption."""
    rng = np.random.default_rng(0)
    n = 300
    trace = Trace(np.sort(rng.uniform(0, 20.0, n)), rng.integers(10, 2000, n).astype(np.int64),
                  rng.integers(1, 200, n).astype(np.int64), TraceMeta("load", "tests", "n/a"))
    m, rec, ret = _episode(trace, window_requests=n, slo_ttft_s=0.5, slo_tpot_s=0.02,
                           slo_metric=metric, recompute_penalty=0.0, drain_s=600.0)
    assert m["finished"] == n
    met = int(rec["slo_met"].sum())
    assert 0 < met < n
    assert ret == pytest.approx(2 * met - n)
    if metric == "tpot":
        tp = rec["tpot"]
        ok = np.isnan(tp) | (tp <= 0.02 * (1 + 1e-12))
        assert np.array_equal(rec["slo_met"], ok & (rec["ttft"] <= 0.5))


def test_episode_tbt_p99_is_exact_over_all_gaps():
    rng = np.random.default_rng(1)
    for n in (1, 7, 99, 100, 101, 5000):
        gaps = rng.exponential(0.02, n)
        heap = S.gap_heap_array(1, n)
        counters = np.zeros((1, S.N_COUNTERS), np.int64)
        for g in gaps:
            _push_gap(heap, counters, 0, g)
        assert counters[0, S.C_GAPS] == n
        assert S.episode_tbt_p99(heap[0], n) == percentile(gaps, 99)
    assert np.isnan(S.episode_tbt_p99(S.gap_heap_array(1, 0)[0], 0))


@pytest.mark.parametrize("seed", range(60))
def test_batched_gap_pushes_keep_the_largest_gaps(seed):
    """``_push_gaps`` (a gap pushed m times as one (gap, count) entry) against a plain sorted list of every
    gap pushed: after every push the heap keeps exactly the G largest (ties, partial and whole removals of
    the least entries, pushes larger than G and pushes that do not get in included), its entries are a
    min-heap with counts >= 1, and the episode p99 is the nearest-rank p99 of all the gaps (up to the
    ``max_gaps`` the heap was sized for)."""
    rng = np.random.default_rng(seed)
    G = int(rng.integers(1, 40))
    heap = S.gap_heap_array(1, (G - 1) * 100)
    assert heap.shape == (1, G + 1, 2)
    heap[0] = rng.uniform(-1, 1, heap.shape[1:])  # what a heap holds before its first push is never read
    counters = np.zeros((1, S.N_COUNTERS), np.int64)
    values = rng.exponential(0.02, int(rng.integers(2, 12)))  # few distinct gaps: ties
    pushed = []
    for _ in range(int(rng.integers(1, 300))):
        g = float(rng.choice(values)) if rng.random() < 0.7 else float(rng.exponential(0.02))
        m = int(rng.integers(1, 3 * G + 2)) if rng.random() < 0.4 else 1 + int(rng.integers(0, 2))
        if m == 1 and rng.random() < 0.5:
            _push_gap(heap, counters, 0, g)
        else:
            _push_gaps(heap, counters, 0, g, m)
        pushed += [g] * m
        n = len(pushed)
        assert counters[0, S.C_GAPS] == n
        k = int(heap[0, 0, 0])
        assert 1 <= k <= G and (heap[0, 1 : k + 1, 1] >= 1).all()
        assert all(heap[0, j // 2, 0] <= heap[0, j, 0] for j in range(2, k + 1)), "not a min-heap"
        assert np.array_equal(S.kept_gaps(heap[0], n), np.sort(pushed)[n - min(n, G):])
        p99 = S.episode_tbt_p99(heap[0], n)
        if n <= (G - 1) * 100:  # exact up to the max_gaps the heap was sized for, an upper bound beyond
            assert p99 == percentile(np.array(pushed), 99)
        else:
            assert p99 >= percentile(np.array(pushed), 99)


def test_kept_gaps_refuses_a_heap_that_does_not_hold_its_gaps():
    heap = S.gap_heap_array(1, 200)  # G = 3
    counters = np.zeros((1, S.N_COUNTERS), np.int64)
    _push_gaps(heap, counters, 0, 0.5, 2)
    assert S.kept_gaps(heap[0], 2).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match=r"entries count 2 gaps, expected min\(n_gaps=3, G=3\)"):
        S.kept_gaps(heap[0], 3)
    heap[0, 0, 0] = 4
    with pytest.raises(ValueError, match=r"holds 4 entries, expected 1..G=3"):
        S.episode_tbt_p99(heap[0], 2)


def test_slo_data_file_sources_and_errors():
    assert slo.default_slo("Llama-3.1-8B") == (2.0, 0.1)
    assert slo.tier_slo("mlperf_interactive", "Llama-3.1-8B") == (0.5, 0.03)
    assert slo.tier_slo("distserve_chatbot", "Llama-3.1-8B") == (0.25, 0.1)
    data = slo._data()
    rows = list(data["models"].values()) + [r for t in data["tiers"].values() for r in t.values()]
    assert rows and all(r["source"] and r["ttft_s"] > 0 and r["tpot_s"] > 0 for r in rows)
    with pytest.raises(KeyError, match="no SLO tier 'nope'"):
        slo.tier_slo("nope", "Llama-3.1-8B")
    with pytest.raises(KeyError, match="tier 'mlperf_interactive' has no SLO for model 'Mixtral-8x7B'"):
        slo.tier_slo("mlperf_interactive", "Mixtral-8x7B")
    with pytest.raises(ValueError, match="slo_metric must be one of tpot, p99_tbt, got 'p99'"):
        EngineSpec(slo_metric="p99").build()
    with pytest.raises(ValueError, match="EngineSpec.slo_tpot_s must be > 0"):
        EngineSpec(slo_tpot_s=0.0).build()


@pytest.mark.parametrize("kw", [{"slo_ttft_s": 1e-40}, {"slo_tpot_s": 1e-7}, {"slo_ttft_s": 1e308},
                                {"slo_tpot_s": 2.0**33}])
def test_an_slo_beyond_the_clock_is_refused(kw):
    """Features and rewards are times in SLOs: slo_ttft_s=1e-40 made every KVAdmission-v0 and Routing-v0
    observation hold inf (Routing's rewards too), 1e308 Routing's. An SLO lies within the simulated clock's range:
    its microsecond resolution up to its span, 2^32 s (envs.core.workload.CLOCK_LIMIT_S)."""
    import envs

    name = next(iter(kw))
    msg = rf"EngineSpec\.{name} must lie in \[1e-06, 4294967296\] seconds .*got {re.escape(repr(kw[name]))}$"
    with pytest.raises(ValueError, match=msg):
        EngineSpec(**kw).build()
    # inf stays "no SLO", as the published-results validation (hwmodels.validate.published) builds its engine
    assert EngineSpec(slo_ttft_s=np.inf, slo_tpot_s=np.inf).build().slo_ttft == np.inf
    for env_id, size in (("servegym/KVAdmission-v0", {}), ("servegym/Routing-v0", {"replicas": 2})):
        with pytest.raises(ValueError, match=msg):
            envs.make_vec(env_id, 1, seed=0, window_requests=64, **size, **kw)


@pytest.mark.parametrize("env_id, size", [("servegym/KVAdmission-v0", {}), ("servegym/Routing-v0", {"replicas": 2})])
@pytest.mark.parametrize("bound", [1e-6, 2.0**32])
def test_an_slo_at_either_end_of_its_range_keeps_observations_and_rewards_finite(env_id, size, bound):
    import envs

    env = envs.make_vec(env_id, 1, seed=0, window_requests=64, slo_ttft_s=bound, slo_tpot_s=bound, **size)
    obs = [env.reset()]
    rewards = []
    for _ in range(60):
        o, r, _, _ = env.step(np.zeros(1, np.int64))
        obs.append(o)
        rewards.append(r)
    assert np.isfinite(np.concatenate(obs)).all() and np.isfinite(np.concatenate(rewards)).all()


def test_evaluation_json_names_the_slo():
    from agents.evaluate import slo_of

    # outputs 10 and 11 tokens: requests of one length finish together in the capacity measurement
    trace = make_trace(64, rate=1.0, prompt=100, output=10 + np.arange(64) % 2)
    vec = kva.KVAdmissionVecEnv(1, seed=0, trace=trace, split="all", window_requests=16,
                                slo_metric="p99_tbt", slo_ttft_s=0.5)
    assert slo_of(vec) == {"metric": "p99_tbt", "ttft_s": 0.5, "tpot_s": 0.1}
