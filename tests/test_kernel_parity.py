"""The fast kernels of issue 16 against the straightforward ones they replaced, bit for bit.

``tests/reference_kernels.py`` keeps the replaced kernels verbatim. KVAdmission-v0: after every
step of random masked actions, the reference ``write_obs`` rebuilds each env's observation and
mask from the same state, and they must equal the env's own, byte for byte. Routing-v0: two
batches with the same seed, one stepped by the env and one by the reference ``step_all``, must
give the same observations, masks, rewards, episode ends and per-request records at every step.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_kernels as ref
from envs.core import state as S
from envs.kv_admission import env as kva
from envs.kv_admission import kernels as KK


def _same_state(a: S.ClusterState, b: S.ClusterState, what: str) -> None:
    """``ref.assert_same_state`` without the scratch fields (``S.SCRATCH_FIELDS``)."""
    ref.assert_same_state(a, b, what, S.SCRATCH_FIELDS)


def _masked_random(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    return (rng.random(mask.shape) * mask).argmax(1)


def _kv_reference_obs(vec: kva.KVAdmissionVecEnv) -> tuple[np.ndarray, np.ndarray]:
    sc = vec.scenario
    obs = np.full_like(vec._obs, np.nan)
    mask = np.zeros_like(vec._mask)
    for e in range(vec.num_envs):
        ref.kv_write_obs(vec.state, sc.workload, sc.engine, e, vec.K, obs, mask, vec._admit, len(kva.BUDGET_LEVELS),
                         vec._scratch.unit[e])
    return obs, mask


@pytest.mark.parametrize("E, steps, kwargs", [
    (1, 1500, {}),
    (16, 400, {"candidates": 3, "slo_metric": "p99_tbt"}),
    (8, 300, {"trace": "mooncake_conv", "prefix_caching": True, "load": 1.5}),
    (4, 600, {"workloads": ("azure_conv", "burstgpt_like-v1"), "workload_seeds": 2, "load": (1.1, 1.5),
              "window_requests": 128, "drain_s": 5.0}),  # a workload mixture: resets per part, episodes end
])
def test_kv_admission_obs_matches_reference(E, steps, kwargs):
    vec = kva.KVAdmissionVecEnv(E, seed=11, **kwargs)
    rng = np.random.default_rng(E)
    obs = vec.reset()
    busiest = 0
    for t in range(steps):
        ref_obs, ref_mask = _kv_reference_obs(vec)
        assert obs.tobytes() == ref_obs.tobytes(), f"step {t}: observation differs from the reference"
        assert np.array_equal(vec.action_masks(), ref_mask), f"step {t}: mask differs from the reference"
        busiest = max(busiest, int(vec.state.n_running.max()))
        obs, _, _, infos = vec.step(_masked_random(rng, vec.action_masks()))
        for e, info in enumerate(infos):  # an episode ended: its terminal observation too
            if "terminal_observation" in info:
                assert np.isfinite(info["terminal_observation"]).all()
    assert busiest >= 8, f"the batch never filled (at most {busiest} running): the comparison proved little"


def test_kv_admission_obs_from_lazy_constants_matches_reference():
    """vLLM's fixed action (the benchmark's steady state: large batches of lazy decoders, requests
    finishing and admitted): ``fill_obs`` takes the running requests' tokens from its per-position
    constants whenever every running request was lazy at the last observation and none was
    admitted since; the observation must still be the reference's, byte for byte. Fails if that
    path never runs (the constants never valid) or if it computes anything differently."""
    from envs.kv_admission import bench as kb

    vec = kva.KVAdmissionVecEnv(4, seed=3)
    obs = vec.reset()
    a = np.full(4, kb.VLLM_ACTION)
    valid = 0
    for t in range(1500):
        if t % 3 == 0:  # the reference reads the state written back (``vec.state``), which empties the lazy set
            ref_obs, ref_mask = _kv_reference_obs(vec)
            assert obs.tobytes() == ref_obs.tobytes(), f"step {t}: observation differs from the reference"
            assert np.array_equal(vec.action_masks(), ref_mask), f"step {t}: mask differs from the reference"
        valid += int(vec._scratch.pos_ok.sum())
        obs, _, _, _ = vec.step(a)
    assert valid >= 0.3 * 4 * 1500, f"the per-position constants were valid in only {valid} of 6000 env-steps"


def test_kv_admission_stateless_write_obs_matches_reference():
    """``write_obs`` (fresh working memory each call, as the multi-agent cluster and the engine
    hook call it) and the batch's ``fill_obs`` (working memory kept across steps) agree with the
    reference on the same states."""
    vec = kva.KVAdmissionVecEnv(4, seed=5, load=1.5)
    rng = np.random.default_rng(0)
    vec.reset()
    sc = vec.scenario
    for _ in range(300):
        vec.step(_masked_random(rng, vec.action_masks()))
    obs = np.zeros_like(vec._obs)
    mask = np.zeros_like(vec._mask)
    for e in range(4):
        KK.write_obs(vec.state, sc.workload, sc.engine, e, vec.K, obs, mask, vec._admit, len(kva.BUDGET_LEVELS),
                     vec._scratch.unit[e])
    ref_obs, ref_mask = _kv_reference_obs(vec)
    assert obs.tobytes() == ref_obs.tobytes() == vec._obs.tobytes()
    assert np.array_equal(mask, ref_mask)


def test_kv_admission_obs_survives_stamp_wrap():
    """The int32 marks of ``ObsScratch`` start over at the stamp limit, still matching the reference."""
    vec = kva.KVAdmissionVecEnv(2, seed=1, load=1.3)
    rng = np.random.default_rng(1)
    vec.reset()
    for _ in range(200):
        vec.step(_masked_random(rng, vec.action_masks()))
    vec._scratch.stamp[:] = KK._STAMP_MAX - 2
    for t in range(6):
        obs, _, _, _ = vec.step(_masked_random(rng, vec.action_masks()))
        ref_obs, _ = _kv_reference_obs(vec)
        assert obs.tobytes() == ref_obs.tobytes(), f"step {t} after the stamp limit"
    assert vec._scratch.stamp.max() < 10


def test_output_bin_and_block_count_match_the_loops_they_replace():
    """fill_obs's O(1) Past-Future bin (1 + bit length of g // 3) is the bin loop's answer for every
    output length up to 2**20 and at the cap; its block count by shift is ceil_div for every block size."""
    import numba as nb

    from envs.core.replica import ceil_div

    @nb.njit
    def mismatches(n):
        bad = 0
        for g in range(n):
            b = 0
            mid = 1.0
            while b < S.N_HIST_BINS and mid <= g:
                b += 1
                mid = 1.5 * (1 << b)
            if KK._output_bin(g) != b:
                bad += 1
        for g in (3 * 2**14, 2**40, 2**62):  # 1.5 * 2**15 <= g: the last bin
            if KK._output_bin(g) != S.N_HIST_BINS:
                bad += 1
        for bs in range(1, 70):
            shift = KK._pow2_shift(bs)
            if (shift >= 0) != (bs & (bs - 1) == 0) or (shift >= 0 and (1 << shift) != bs):
                bad += 1
            for a in range(0, 3000):
                if KK._ceil_blocks(a, bs, shift) != ceil_div(a, bs):
                    bad += 1
        return bad

    assert mismatches(1 << 20) == 0


def test_peaks_ties_and_extremes_match_one_pass_per_configuration():
    """``_peaks`` against the reference ``_peak`` (one pass per configuration) on random inputs
    with many equal remaining lengths, candidates inserted above, inside and below the batch, 1 to
    17 candidates (one, two and three passes of ``_peaks``' 8 register lanes)."""
    rng = np.random.default_rng(3)
    for trial in range(400):
        n = int(rng.integers(0, 40))
        rems = np.sort(rng.choice([1.0, 2.5, 7.25, 100.0 / 3.0, 400.0], n) + rng.integers(0, 3, n) * (trial % 2))
        lens = rng.integers(1, 5000, n).astype(np.float64)
        K = int(rng.integers(1, 18))
        extra = np.cumsum(rng.integers(1, 3000, K)).astype(np.float64)
        mean_out = float(rng.choice([0.5, 1.0, 7.25, 50.0, 1e4]))
        peak = np.zeros(K + 1)
        KK._peaks(lens, rems, n, mean_out, extra, K, peak)
        assert peak[0] == ref._peak(lens, rems, n, 0.0, 0.0, mean_out)
        for k in range(K):
            assert peak[k + 1] == ref._peak(lens, rems, n, extra[k], k + 1.0, mean_out), (trial, k)


def _rt_reference_advance(vec) -> None:
    sc, cfg = vec.scenario, vec.config
    ref.rt_step_all(vec.state, sc.workload, sc.engine, vec._actions, vec.up, cfg.budget, cfg.drain_s, cfg.stale_s,
                    cfg.hash_blocks, sc.sec_per_prefill_token, vec._cap_rps, vec.ttft_bound_s,
                    float(cfg.ttft_bound_penalty), vec._charged, vec._ttft_ema, vec._busy, vec._snap, vec._snap_t,
                    vec._sent, vec._obs, vec._mask, vec._rew, vec._term, vec._trunc)


def _same_info(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not _same_info(x, y):
                return False
        elif isinstance(x, np.ndarray):
            if x.tobytes() != np.asarray(y).tobytes():
                return False
        elif not (x == y or (x != x and y != y)):  # NaN metrics compare equal
            return False
    return True


def _lockstep(a, b, rng: np.random.Generator, steps: int, what: str) -> int:
    """Step VecEnvs ``a`` and ``b`` with the same random legal actions for ``steps`` steps,
    asserting equal observations, masks, rewards, episode ends and infos (``what`` names ``b`` in
    the messages); returns how many episodes ended."""
    o1, o2 = a.reset(), b.reset()
    ended = 0
    for t in range(steps):
        assert o1.tobytes() == o2.tobytes(), f"step {t}: observation differs from {what}"
        assert np.array_equal(a.action_masks(), b.action_masks()), f"step {t}: mask differs from {what}"
        act = _masked_random(rng, a.action_masks())
        o1, r1, d1, i1 = a.step(act)
        o2, r2, d2, i2 = b.step(act)
        assert r1.tobytes() == r2.tobytes() and np.array_equal(d1, d2), f"step {t}: reward or episode end differs"
        assert all(_same_info(x, y) for x, y in zip(i1, i2)), f"step {t}: infos differ"
        ended += int(d1.sum())
    return ended


@pytest.mark.parametrize("E, steps, kwargs", [
    (1, 1200, {}),
    (6, 300, {"stale_s": 0.5, "load": 1.3}),
    (4, 300, {"replicas": 3, "slo_metric": "p99_tbt", "queue_slots": 16, "load": 1.5}),
    # KV pressure: preemptions inside the core's iteration loop (run_iteration with until), which
    # the reference runs as one call per iteration
    (3, 300, {"replicas": 3, "capacity_blocks": 1500, "load": 1.3}),
])
def test_routing_steps_match_reference(E, steps, kwargs):
    from envs.routing import env as rt

    fast = rt.RoutingVecEnv(E, seed=7, **kwargs)
    slow = rt.RoutingVecEnv(E, seed=7, **kwargs)
    slow.advance = lambda: _rt_reference_advance(slow)
    _lockstep(fast, slow, np.random.default_rng(E), steps, "the reference")
    _same_state(fast.state, slow.state, f"the reference after {steps} steps")
    assert fast._busy.tobytes() == slow._busy.tobytes() and fast._ttft_ema.tobytes() == slow._ttft_ema.tobytes()
    assert fast._charged.tobytes() == slow._charged.tobytes(), "TTFT tail-bound charges differ"
    assert int(fast.state.counters[:, 8].sum()) > steps, "replicas ran too few iterations to compare"
    if kwargs.get("load", 0) >= 1.3:  # random routing past capacity: the tail-bound term was exercised
        assert fast._charged.sum() > 0
    if "capacity_blocks" in kwargs:
        preempted = int(fast.state.counters[:, S.C_PREEMPTIONS].sum())
        assert preempted > 0, "no preemption: the KV-pressure case proved little"


@pytest.mark.parametrize("E, steps, kwargs", [
    (4, 700, {"window_requests": 128, "drain_s": 5.0, "load": 1.5}),  # episodes end inside the run
    (3, 500, {"trace": "mooncake_conv", "slo_metric": "p99_tbt", "load": 1.5, "window_requests": 256}),
    (2, 500, {"queue_slots": 24, "load": 1.5, "window_requests": 256}),  # a queue limit that drops requests
])
def test_kv_admission_sized_arrays_match_full_size(E, steps, kwargs):
    """KVAdmission sizes its slots by the window (not ``queue_slots``), its per-slot top gaps by
    the longest output (``state.top_gaps_needed``) and packs its hot per-slot fields
    (``state.PACKED_SLOT_FIELDS``): every observation, reward, episode end, info and per-request
    record equals that of a batch with the full-size, unpacked arrays."""
    from envs.core import state as S

    sized = kva.KVAdmissionVecEnv(E, seed=3, **kwargs)
    full = kva.KVAdmissionVecEnv(E, seed=3, **kwargs)
    st, cfg, eng = sized.state, full.config, full.scenario.engine
    full.state = S.allocate(E, 1, cfg.queue_slots, cfg.window_requests, st.pc_key.shape[2],
                            (st.gap_heap.shape[1] - 2) * 100, S.TOP_GAPS)
    full._scratch = KK.obs_scratch(E, eng.max_seqs, cfg.queue_slots, full.K)
    assert st.status.shape[2] == min(cfg.queue_slots, cfg.window_requests)
    assert st.top_gaps.shape[3] == S.top_gaps_needed(eng.max_output) <= S.TOP_GAPS
    assert st.target.base is st.kv_tokens.base and st.target.strides[-1] == 4 * len(S.PACKED_SLOT_FIELDS)
    assert full.state.target.flags.c_contiguous
    ended = _lockstep(sized, full, np.random.default_rng(E), steps, "the full-size batch")
    for name in ("counters", "accum", "clock", "fate", "ttft", "e2e", "tbt_p99", "tpot", "slo_met", "gap_heap"):
        assert getattr(sized.state, name).tobytes() == getattr(full.state, name).tobytes(), name
    c = sized.state.counters
    assert c[:, S.C_FINISHED].sum() > 0, "no request finished: the comparison proved little"
    if "drain_s" in kwargs:
        assert ended > 0, "no episode ended"
    if "queue_slots" in kwargs:
        assert c[:, S.C_DROPPED].sum() > 0, "the queue limit dropped nothing"


@pytest.mark.parametrize("kwargs", [{}, {"slo_metric": "p99_tbt", "load": 1.3}, {"capacity_blocks": 1500, "load": 1.3}])
def test_decode_run_matches_one_iteration_at_a_time(kwargs):
    """``replica.decode_run`` (a replica's decode-only iterations with each request's records brought
    up to date at the end) leaves the state that as many single ``run_iteration`` calls leave, byte for
    byte (the gap heap: the same kept gaps, ``_same_state``), from every replica of a batch in the middle
    of its episodes; and it ran somewhere."""
    from envs.core import replica as RP
    from envs.routing import env as rt

    vec = rt.RoutingVecEnv(6, seed=5, **kwargs)
    vec.reset()
    rng = np.random.default_rng(0)
    sc, budget = vec.scenario, vec.config.budget
    ran = blocks = 0
    for t in range(120):
        vec.step(_masked_random(rng, vec.action_masks()))
        if t % 30 != 29:
            continue
        for e in range(vec.num_envs):
            for r in range(vec.R):
                a = S.ClusterState(*[x.copy() for x in vec.state])
                b = S.ClusterState(*[x.copy() for x in vec.state])
                busy_a, busy_b = np.zeros_like(vec._busy), np.zeros_like(vec._busy)
                free0 = int(a.free_blocks[e, r])
                m = RP.decode_run(a, sc.workload, sc.engine, e, r, budget, a.r_clock[e, r] + 2.0, busy_a)
                for _ in range(m):
                    busy_b[e, r] += RP.run_iteration(b, sc.workload, sc.engine, e, r, sc.engine.max_seqs, budget, False,
                                                     RP.ORDER_FCFS, b.r_clock[e, r])
                _same_state(a, b, f"env {e} replica {r} after {m} iterations")
                assert busy_a.tobytes() == busy_b.tobytes()
                ran += m
                blocks += free0 - int(a.free_blocks[e, r])
    assert ran > 100 and blocks > 0, f"decode runs ran {ran} iterations and took {blocks} blocks: too little to compare"


def test_sort_by_rem_is_the_stable_insertion_sort():
    """``_sort_by_rem`` (insertion sort that carries a jumped-up entry forward) leaves every array in
    the stable order by ``rems``, position for position, on nearly sorted inputs with entries that
    jumped up or down, ties (the clamp at 1.0) and new entries at the end."""
    import numba as nb

    @nb.njit
    def sort(rems, order, pos_g, pos_l, pos_b):
        KK._sort_by_rem(rems, order, pos_g, pos_l, pos_b, rems.shape[0])

    rng = np.random.default_rng(3)
    for trial in range(3000):
        n = int(rng.integers(0, 60))
        rems = np.sort(rng.integers(1, 40, n).astype(np.float64))
        k = int(rng.integers(0, 4))
        for i in rng.integers(0, max(n, 1), k if n else 0):  # jumps up or down
            rems[i] += rng.choice([-1.0, 1.0]) * rng.integers(1, 40)
        rems = np.maximum(rems, 1.0)
        if trial % 3 == 0 and n:
            rems[-int(rng.integers(1, n + 1)):] = rng.integers(1, 40, 1)  # new entries, ties
        order = rng.permutation(n).astype(np.int32)
        want = np.argsort(rems, kind="stable")
        arrays = [rems.copy(), order.copy(), order.astype(np.int64) * 3, order.astype(np.int64) + 7,
                  order.astype(np.int64) - 5]
        sort(*arrays)
        for got, orig in zip(arrays, [rems, order, order.astype(np.int64) * 3,
                                      order.astype(np.int64) + 7, order.astype(np.int64) - 5]):
            assert np.array_equal(got, orig[want]), (trial, rems, got, orig[want])
