"""The cluster model: invariants under random input, analytic checks, preemption, prefix reuse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_trace
from envs.kv_admission import env as kva
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
    """Step until every env finished one episode; per-env metrics and per-request records."""
    obs = vec.reset()
    done_once = np.zeros(vec.num_envs, bool)
    metrics = [None] * vec.num_envs
    records = [None] * vec.num_envs
    steps = 0
    while not done_once.all() and steps < max_steps:
        obs, _, dones, infos = vec.step(action_fn(obs, vec.action_masks()))
        for e in np.flatnonzero(dones & ~done_once):
            metrics[e] = infos[e]["metrics"]
            records[e] = infos[e]["requests"]
        done_once |= dones
        steps += 1
    assert done_once.all(), "episodes did not end"
    return metrics, records


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
    # Some requests the trace marks failed, some longer than the KV pool (rejected at arrival).
    failed = rng.random(n) < 0.1
    output[failed] = 0
    prompt[rng.random(n) < 0.05] = 8000
    trace = Trace(
        np.sort(rng.exponential(1 / rate, n).cumsum()), prompt.astype(np.int64),
        output.astype(np.int64), TraceMeta("random", "hypothesis", "n/a"), failed=failed,
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
            assert m["finished"] + m["dropped"] + m["unfinished"] + m["failed"] + m["rejected"] == m["requests"]
            assert not any(np.isnan(v) for v in m.values()) or m["finished"] == 0


def test_low_load_ttft_equals_hwmodels_prefill_time():
    prompt, output = 1000, 4
    trace = make_trace(64, rate=0.01, prompt=prompt, output=output, poisson=False)
    vec = _vec(trace, window_requests=32, rate_scale=1.0)
    _, rec = _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    c = vec.scenario.engine.coeffs
    prefill = step_time(c, float(prompt), prompt * (prompt + 1) / 2.0, 0.0, 0.0)
    decodes = sum(step_time(c, 0.0, 0.0, 1.0, float(prompt + k)) for k in range(1, output))
    np.testing.assert_allclose(rec[0]["ttft"], prefill, rtol=1e-9)
    np.testing.assert_allclose(rec[0]["e2e"], prefill + decodes, rtol=1e-9)
    assert rec[0]["slo_met"].all()


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
    _, rec = _run(vec, lambda o, m: np.full(len(o), admit_one))
    measured = np.mean([r["ttft"] for r in rec])
    expected = D + rho * D / (2 * (1 - rho))
    assert measured == pytest.approx(expected, rel=0.08), (measured, expected)


def test_kv_shortage_preempts_newest_and_everything_still_finishes():
    trace = make_trace(64, rate=50.0, prompt=300, output=400, seed=1)
    vec = _vec(trace, 2, window_requests=32, capacity_blocks=150)
    metrics, _ = _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    for m in metrics:
        assert m["preemptions"] > 0 and m["recomputed_tokens"] > 0
        assert m["finished"] == m["requests"]


def test_defer_lets_the_oldest_finish_instead_of_preempting_the_newest():
    """A (48-token prompt, 10 out) and B (96, 60) on 10 blocks of 16: after one prefill
    iteration A takes the last free block and B runs short. vLLM preempts B (the newest) and
    recomputes it; defer lets B wait until A finishes and frees its blocks."""
    trace = Trace(
        np.array([0.0, 1e-6, 100.0, 100.0 + 1e-6]), np.array([48, 96, 48, 96], np.int64),
        np.array([10, 60, 10, 60], np.int64), TraceMeta("ab", "tests", "n/a"),
    )
    defer = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, 2, True, ORDER_FCFS)
    runs = {}
    for name, action in (("preempt", FCFS_8192), ("defer", defer)):
        vec = _vec(trace, window_requests=2, capacity_blocks=10, rate_scale=1.0)
        metrics, rec = _run(vec, lambda o, m, a=action: np.full(len(o), a))
        runs[name] = (metrics[0], rec[0])
    assert runs["preempt"][0]["preemptions"] == 1
    assert runs["preempt"][0]["recomputed_tokens"] > 0
    assert runs["defer"][0]["preemptions"] == 0
    assert runs["defer"][0]["recomputed_tokens"] == 0
    for m, _ in runs.values():
        assert m["finished"] == 2


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
        # outputs of 8 and 9 tokens: requests of one length would all finish in one iteration of the
        # capacity measurement (envs.core.capacity.NoSteadyState); no TTFT depends on the output
        np.arange(n, dtype=np.float64) * 2.0, np.full(n, 5 * bs, np.int64), 8 + np.arange(n, dtype=np.int64) % 2,
        TraceMeta("shared-prefix", "tests", "n/a"), block_ids=np.array(ids, np.int64),
        block_offsets=np.array(offs, np.int64), block_size=bs,
    )
    vec = _vec(trace, window_requests=n, prefix_caching=True, rate_scale=1.0)
    metrics, rec = _run(vec, lambda o, m: np.full(len(o), FCFS_8192))
    m = metrics[0]
    assert m["block_hit_ratio"] == pytest.approx(4 * (n - 1) / (5 * n))
    assert m["token_hit_ratio"] == pytest.approx(4 * bs * (n - 1) / (5 * bs * n))
    ttft = rec[0]["ttft"]
    assert np.all(ttft[1:] < ttft[0])
    nocache = _vec(trace, window_requests=n, rate_scale=1.0)
    _, rec_nc = _run(nocache, lambda o, m: np.full(len(o), FCFS_8192))
    assert np.allclose(rec_nc[0]["ttft"], ttft[0])
    assert np.all(rec_nc[0]["ttft"][1:] > ttft[1:])


def test_step_time_is_bit_identical_to_hwmodels_iteration_time():
    """``envs.core.engine.step_time`` (log2/pow short-cut, decode-only fold) against the compiled
    ``hwmodels.iteration_time`` on every model/GPU/profile coefficient set: exhaustive decode counts and
    prefill tokens 0-4095, random mixed loads, unknown stragglers (-1); equal bits, signed zeros included."""
    import hwmodels
    import numba as nb

    from envs.core.engine import step_time, step_time_reference

    @nb.njit
    def mismatches(c, P, A, D, K, L, LP):
        bad = 0
        for i in range(P.shape[0]):
            x = step_time(c, P[i], A[i], D[i], K[i], L[i], LP[i])
            y = step_time_reference(c, P[i], A[i], D[i], K[i], L[i], LP[i])
            if not (x == y or (x != x and y != y)) or np.signbit(x) != np.signbit(y):
                bad += 1
        return bad

    rng = np.random.default_rng(0)
    n = 50_000
    for m in ("Llama-3.1-8B", "Llama-3.1-70B", "Qwen3-30B-A3B", "DeepSeek-V3"):
        for profile in (None, "vllm"):
            tp = 1 if m in ("Llama-3.1-8B", "Qwen3-30B-A3B") else 8
            c = np.ascontiguousarray(hwmodels.StepTimeModel(hwmodels.get_model(m), hwmodels.get_gpu("H100"), tp=tp,
                                                            profile=profile).coeffs, np.float64)
            D = np.floor(rng.exponential(50, n))
            P = np.floor(rng.exponential(800, n)) * (rng.random(n) < 0.5)
            P[:4096] = np.arange(4096)
            D[4096:8192] = np.arange(4096)
            A = P * rng.random(n) * 3000
            K = D * rng.random(n) * 3000
            L = np.where(rng.random(n) < 0.2, -1.0, K)
            LP = np.where(rng.random(n) < 0.3, -1.0, P + 100)
            assert mismatches(c, P, A, D, K, L, LP) == 0, (m, profile)


def test_natural_rate_counts_only_requests_the_engine_accepts() -> None:
    """A request rejected at arrival (here a prompt over the 131,072-token context) does not speed up
    its window's replay: the rate is over the accepted requests and the span of their arrivals, also
    when the rejected one opens or closes the window; a window with fewer than two accepted requests
    keeps the rate of all its arrivals (envs.core.workload.build_workload)."""
    from envs.core.engine import EngineSpec
    from envs.core.replica import accepted_at_arrival, accepted_values
    from envs.core.workload import build_workload

    tr = make_trace(12, 1.0, 100, 10, poisson=False)  # arrivals 0, 1, ..., 11 s; windows of 4
    prompt = tr.prompt_tokens.copy()
    prompt[[0, 6, 8, 9, 10]] = 200_000  # window 0 opens rejected, window 1 has one inside, window 2 one left
    tr = tr.replace(prompt_tokens=prompt)
    eng = EngineSpec().build()
    ok = accepted_at_arrival(eng, tr.prompt_tokens, tr.output_tokens)
    assert ok.tolist() == [i not in (0, 6, 8, 9, 10) for i in range(12)]
    _, rate_all = build_workload(tr, 4, 1.0, 0)
    _, rate = build_workload(tr, 4, 1.0, 0, ok)
    assert rate_all.tolist() == [1.0, 1.0, 1.0]
    # window 0: requests 1..3 over 2 s; window 1: 4, 5, 7 over 3 s; window 2: only 11 accepted -> all arrivals
    assert rate.tolist() == pytest.approx([1.0, 2.0 / 3.0, 1.0])
    assert accepted_values(tr.prompt_tokens, ok).max() == 100
    assert accepted_values(tr.prompt_tokens, np.zeros(12, bool)).max() == 200_000  # none accepted: all
    with pytest.raises(ValueError, match="accepted must be a bool array of its 12 requests"):
        build_workload(tr, 4, 1.0, 0, ok[:5])
    with pytest.raises(ValueError, match="one length"):
        accepted_at_arrival(eng, tr.prompt_tokens, tr.output_tokens[:3])


def test_longest_accepted_output_is_over_the_requests_each_part_accepts() -> None:
    """The one helper the scenario builders share for max_tokens (envs.core.replica.longest_accepted_output):
    a rejected request's output (a 200,000-token prompt asking 9,000 tokens) does not count; a part whose
    requests are all rejected counts all of them (accepted_values); the masks are accepted_at_arrival's."""
    from envs.core.engine import EngineSpec
    from envs.core.replica import accepted_at_arrival, longest_accepted_output

    eng = EngineSpec().build()
    a = make_trace(6, 1.0, 100, 10, poisson=False)
    out = a.output_tokens.copy()
    out[[1, 4]] = [9_000, 500]
    prompt = a.prompt_tokens.copy()
    prompt[1] = 200_000
    a = a.replace(prompt_tokens=prompt, output_tokens=out)
    b = make_trace(4, 1.0, 100, 20, poisson=False)
    longest, masks = longest_accepted_output(eng, (a, b))
    assert longest == 500
    assert [m.tolist() for m in masks] == [accepted_at_arrival(eng, t.prompt_tokens, t.output_tokens).tolist()
                                           for t in (a, b)]
    assert masks[0].tolist() == [True, False, True, True, True, True]
    none = a.replace(prompt_tokens=np.full(6, 200_000, np.int64))  # none accepted: all its outputs
    assert longest_accepted_output(eng, [none])[0] == 9_000
    with pytest.raises(ValueError, match="no parts"):
        longest_accepted_output(eng, [])


def test_rejected_requests_opening_or_closing_a_window_do_not_lengthen_it() -> None:
    """A window's arrival offsets start at its first accepted arrival and end at its last: a request
    rejected at arrival before or after them arrives at that time (still counted as rejected), so the
    episode's duration, hence goodput and throughput, are those of the window without it
    (envs.core.workload.build_workload; on main window 0's offsets were 0, 1, 2, 3: one idle second; a
    window of one accepted request has every offset 0: the rejected ones arrive with it)."""
    from envs.core.engine import EngineSpec
    from envs.core.replica import accepted_at_arrival
    from envs.core.workload import build_workload

    tr = make_trace(16, 1.0, 100, 10, poisson=False)  # arrivals 0, 1, ..., 15 s; windows of 4
    prompt = tr.prompt_tokens.copy()
    prompt[[0, 7, 9, 12, 13, 14]] = 200_000  # w0 opens rejected, w1 closes so, w2 inside, w3 one accepted
    tr = tr.replace(prompt_tokens=prompt)
    ok = accepted_at_arrival(EngineSpec().build(), tr.prompt_tokens, tr.output_tokens)
    wl_all, _ = build_workload(tr, 4, 1.0, 0)
    wl, rate = build_workload(tr, 4, 1.0, 0, ok)
    assert wl.arrival_s.tolist() == [[0, 0, 1, 2], [0, 1, 2, 2], [0, 1, 2, 3], [0, 0, 0, 0]]  # w3: only 15
    assert rate.tolist() == pytest.approx([1.0, 1.0, 2.0 / 3.0, 1.0])  # w2: 8, 10, 11 over 3 s
    assert wl_all.arrival_s.tolist() == [[0, 1, 2, 3]] * 4
    assert np.all(np.diff(wl.arrival_s, axis=1) >= 0)
    # every other array of the workload is the one without `accepted`
    for f in ("prompt", "output", "pred_bucket", "n_requests", "chain_ids", "chain_len", "failed"):
        assert np.array_equal(getattr(wl, f), getattr(wl_all, f)), f


# --- envs.core.capacity: the load unit ------------------------------------------------------------

def _lengths_trace(n: int, seed: int = 0) -> Trace:
    """``n`` requests of uniform random lengths (prompt 100-999, output 50-299 tokens), 0.5 s apart."""
    rng = np.random.default_rng(seed)
    return make_trace(n, 2.0, rng.integers(100, 1000, n), rng.integers(50, 300, n), poisson=False, name="small")


def test_capacity_of_a_trace_smaller_than_a_batch_is_its_sustained_rate():
    """140 requests fit one batch of the engine's 1,024 sequences: the whole trace ran as one burst and
    the 20th-80th percentile completions of that one batch gave 43.2 requests/s; the replica sustains
    35.4 on these requests (a stream of 32,768 of them). Now they are repeated until the measured span is
    steady (envs.core.capacity): within 1% of the sustained rate."""
    from envs.core.capacity import measure_capacity_rps
    from envs.core.workload import build_workload

    tr = _lengths_trace(140)
    vec = _vec(tr, window_requests=140)
    eng, cap = vec.scenario.engine, vec.scenario.capacity_rps
    assert 140 < eng.max_seqs
    wl, _ = build_workload(tr, 140, vec.config.predictor_accuracy, 0)
    one_burst = measure_capacity_rps(eng, wl, max_requests=140)  # the old measurement: the trace once
    long_wl, _ = build_workload(tr.replace(
        arrival_s=np.arange(140 * 240) * 0.5, prompt_tokens=np.tile(tr.prompt_tokens, 240),
        output_tokens=np.tile(tr.output_tokens, 240)), 140 * 240, 1.0, 0)
    sustained = measure_capacity_rps(eng, long_wl, max_requests=140 * 234)
    assert one_burst > 1.2 * sustained
    assert cap == pytest.approx(sustained, rel=0.01)


def test_capacity_stream_served_with_the_queue_topped_up_finishes_as_all_at_once(monkeypatch):
    """envs.core.capacity feeds its stream into the queue as admission needs it (an all-at-once queue of M requests
    cost O(M) per iteration in FCFS's scan for the oldest); the finish times, first tokens, fates and counters must
    be exactly those of every request queued at time 0, whichever limit binds: KV memory (preemptions), the batch
    size, the token budget, prompts longer than the budget, requests failed in the trace or rejected."""
    import numba as nb

    from envs.core import capacity as C
    from envs.core import state as S
    from envs.core.replica import enqueue, reset_env_state, reset_replica, run_iteration
    from envs.core.workload import build_workload

    @nb.njit
    def all_at_once(st, wl, eng, budget):
        reset_env_state(st, 0, 0, 0.0)
        reset_replica(st, eng, 0, 0)
        N = wl.n_requests[0]
        for i in range(N):
            enqueue(st, wl, eng, 0, 0, i)
        st.next_arrival[0] = N
        now = 0.0
        while st.n_running[0, 0] + st.n_queued[0, 0] > 0:
            now += run_iteration(st, wl, eng, 0, 0, eng.max_seqs, budget, False, ORDER_FCFS, now)

    rng = np.random.default_rng(3)
    n = 600
    tr = make_trace(n, 2.0, rng.integers(50, 20000, n), rng.integers(1, 3000, n), poisson=False, name="mixed")
    tr = tr.replace(failed=np.arange(n) % 50 == 0)  # failed in the trace
    vec = _vec(_lengths_trace(140), window_requests=140)
    wl, _ = build_workload(tr, n, 1.0, 0)
    preempted = rejected = 0
    topped_up = C._saturated_finish_times
    for eng, budget in ((vec.scenario.engine._replace(capacity_blocks=600), 8192),  # KV-bound: preemptions
                        (vec.scenario.engine._replace(max_seqs=7), 8192),  # batch-bound
                        (vec.scenario.engine, 512)):  # budget-bound, prompts longer than the budget
        index = np.arange(n)
        got = C._serve_stream(eng, wl, index, budget)
        monkeypatch.setattr(C, "_saturated_finish_times", all_at_once)  # the same stream, every request queued
        ref = C._serve_stream(eng, wl, index, budget)
        monkeypatch.setattr(C, "_saturated_finish_times", topped_up)
        for field in ("e2e", "ttft", "fate", "counters"):
            np.testing.assert_array_equal(getattr(got, field), getattr(ref, field), err_msg=field)
        assert (ref.fate[0] == S.FAILED).sum() == 12 and (ref.fate[0] == S.FINISHED).sum() > 200
        preempted += int(ref.counters[0, S.C_PREEMPTIONS])
        rejected += int((ref.fate[0] == S.REJECTED).sum())
    assert preempted > 0 and rejected > 0  # (prompts beyond the KV-bound engine's pool)


def test_capacity_of_the_built_in_scenarios_is_unchanged():
    """Workloads of 2,048 requests or more are measured on their first 2,048 as before the repeats of small
    traces: the default scenarios' capacities (every committed result depends on them) as measured at 04c1ff8."""
    import envs

    kv = envs.make_vec("servegym/KVAdmission-v0", 1, seed=0)
    assert kv.scenario.capacity_rps == pytest.approx(16.549836937728, rel=1e-12)
    routing = envs.make_vec("servegym/Routing-v0", 1, seed=0)
    assert routing.scenario.replica_capacity_rps == pytest.approx(0.360811586048839, rel=1e-12)

