"""KVAdmission-v0 API: Gymnasium and SB3 checkers, registration, VecEnv/Env equivalence, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
import traces
from conftest import make_trace
from envs.kv_admission import env as kva

TRACE = make_trace(2048, rate=20.0, prompt=np.arange(2048) % 900 + 50, output=np.arange(2048) % 300 + 5, seed=4)
SMALL = dict(trace=TRACE, window_requests=64)


def test_gymnasium_and_sb3_checkers_pass():
    env = kva.KVAdmissionEnv(**SMALL)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(kva.KVAdmissionEnv(**SMALL), warn=True)


def test_registered_id_makes_the_env():
    env = gym.make("servegym/KVAdmission-v0", **SMALL)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    obs, r, term, trunc, _ = env.step(0 if env.unwrapped.action_masks()[0] else int(np.argmax(env.unwrapped.action_masks())))
    assert isinstance(r, float)


def _masked_random(rng, mask):
    keys = rng.random(mask.shape)
    keys[~mask] = -1
    return keys.argmax(-1)


def test_native_vecenv_matches_gymnasium_copies():
    E, seed = 4, 7
    vec = kva.KVAdmissionVecEnv(E, seed=seed, **SMALL)
    singles = [kva.KVAdmissionEnv(**SMALL) for _ in range(E)]
    obs_v = vec.reset()
    obs_s = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(singles)])
    np.testing.assert_array_equal(obs_v, obs_s)
    rng = np.random.default_rng(0)
    alive = np.ones(E, bool)
    for _ in range(3000):
        a = _masked_random(rng, vec.action_masks())
        masks_s = np.stack([env.action_masks() for env in singles])
        np.testing.assert_array_equal(vec.action_masks()[alive], masks_s[alive])
        obs_v, rew_v, done_v, _ = vec.step(a)
        for i, env in enumerate(singles):
            if not alive[i]:
                continue
            o, r, term, trunc, _ = env.step(int(a[i]))
            assert r == pytest.approx(rew_v[i], abs=0)
            assert (term or trunc) == done_v[i]
            if done_v[i]:
                alive[i] = False  # the VecEnv auto-resets; compare first episodes only
            else:
                np.testing.assert_array_equal(o, obs_v[i])
        if not alive.any():
            break
    assert not alive.any(), "episodes should end within the step budget"


def test_same_seed_same_trajectory():
    def rollout():
        vec = kva.KVAdmissionVecEnv(3, seed=11, **SMALL)
        vec.reset()
        rng = np.random.default_rng(5)
        total = []
        for _ in range(500):
            obs, r, d, _ = vec.step(_masked_random(rng, vec.action_masks()))
            total.append(obs.copy())
        return np.stack(total)

    np.testing.assert_array_equal(rollout(), rollout())


def test_make_vec_and_bad_inputs():
    vec = envs.make_vec("servegym/KVAdmission-v0", 2, seed=0, **SMALL)
    vec.reset()
    with pytest.raises(ValueError, match="actions must be integers"):
        vec.step(np.array([0, kva.N_ACTIONS]))
    with pytest.raises(KeyError, match="unknown environment"):
        envs.make_vec("servegym/Nope-v0", 1)
    with pytest.raises(ValueError, match=r"^KVAdmission: load must be a finite number > 0 or a non-empty tuple of "
                                         r"them, got -1\.0$"):
        kva.KVAdmissionVecEnv(1, load=-1.0, **SMALL)
    with pytest.raises(ValueError, match="split must be"):
        kva.KVAdmissionVecEnv(1, split="validation", **SMALL)
    # Requests larger than a 10-block KV pool no longer stop the scenario from building: the
    # engine rejects them at arrival (tests/test_trace_cases.py counts them).
    kva.KVAdmissionVecEnv(1, trace=TRACE, window_requests=64, capacity_blocks=10).close()
    with pytest.raises(ValueError, match="no block ids"):
        kva.KVAdmissionVecEnv(1, prefix_caching=True, **SMALL)
    with pytest.raises(TypeError):
        kva.KVAdmissionVecEnv(1, not_a_field=3, **SMALL)


def test_action_encoding_round_trips_and_masks_are_consistent():
    for a in range(kva.N_ACTIONS):
        assert kva.encode_action(*kva.decode_action(a)) == a
    vec = kva.KVAdmissionVecEnv(2, seed=0, **SMALL)
    vec.reset()
    mask = vec.action_masks()
    assert mask.any(axis=1).all()


def test_run_fixed_is_stepping_one_at_a_time():
    """``run_fixed`` (the steps of a fixed action in one kernel call) leaves the batch where as many
    ``step`` calls leave it: same last observations, rewards, episode ends, infos, returns."""
    from envs.kv_admission.bench import VLLM_ACTION

    kw = dict(window_requests=64, drain_s=5.0, load=1.3)
    fast, slow = kva.KVAdmissionVecEnv(3, seed=4, **kw), kva.KVAdmissionVecEnv(3, seed=4, **kw)
    fast.reset(), slow.reset()
    ended = total = 0
    for max_steps in (1, 7, 500, 500, 3, 500, 500):
        n, (o1, r1, d1, i1) = fast.run_fixed(VLLM_ACTION, max_steps)
        assert 1 <= n <= max_steps and (n == max_steps or d1.any())
        for _ in range(n):
            o2, r2, d2, i2 = slow.step(np.full(3, VLLM_ACTION))
        assert o1.tobytes() == o2.tobytes() and r1.tobytes() == r2.tobytes() and np.array_equal(d1, d2)
        assert fast._returns.tobytes() == slow._returns.tobytes() and np.array_equal(fast._lengths, slow._lengths)
        for x, y in zip(i1, i2):
            assert x.keys() == y.keys() and x.get("episode") == y.get("episode")
            assert str(x.get("metrics")) == str(y.get("metrics"))
        ended += int(d1.sum())
        total += n
    assert ended > 0, "no episode ended inside run_fixed"
    with pytest.raises(ValueError, match="max_steps"):
        fast.run_fixed(VLLM_ACTION, 0)


def _counts_check(vec, rng, steps: int, units: np.ndarray) -> int:
    """Steps random legal actions; after each, every env's request-count features equal its state's counts in
    ``units[e]`` (float32). Returns how many checked observations had requests queued and running."""
    from envs.kv_admission import kernels as K

    names = list(K.GLOBAL_FEATURES)
    i_q, i_run = names.index("queue_len"), names.index("running")
    busy = 0
    for _ in range(steps):
        m = vec.action_masks()
        obs, _, done, _ = vec.step(np.array([rng.choice(np.flatnonzero(row)) for row in m]))
        st = vec.state
        for e in np.flatnonzero(~done):
            n_q, n_run = int(st.n_queued[e, 0]), int(st.n_running[e, 0])
            assert obs[e, i_run] == np.float32(n_run / units[e])
            assert obs[e, i_q] == np.float32(np.log2(1.0 + n_q / units[e]) / 4.0)
            busy += n_q > 0 and n_run > 0
    return busy


def test_observation_counts_requests_in_capacity_units():
    """Request counts are in units of what the replica serves in one TTFT SLO (issue 21: a policy reads the same
    load on any engine): count_unit(capacity measured on the episode's part, TTFT SLO), per part in a mixture."""
    from envs.core.capacity import count_unit

    rng = np.random.default_rng(0)
    vec = kva.KVAdmissionVecEnv(3, seed=2, load=1.5, **SMALL)
    vec.reset()
    sc = vec.scenario
    unit = count_unit(sc.capacity_rps, sc.engine.slo_ttft)
    assert unit == sc.capacity_rps * sc.engine.slo_ttft > 0
    assert (vec._scratch.unit == unit).all()
    assert _counts_check(vec, rng, 200, vec._scratch.unit) > 50

    mix = kva.KVAdmissionVecEnv(4, seed=3, workloads=("azure_conv", "burstgpt_like-v1"), window_requests=64, load=1.5)
    mix.reset()
    sc = mix.scenario
    assert sc.part_capacity_rps[0] != sc.part_capacity_rps[1]
    for _ in range(3):
        units = mix._scratch.unit.copy()
        for e in range(4):
            part = sc.part_of(int(mix.state.window[e]))
            assert units[e] == count_unit(sc.part_capacity_rps[part], sc.engine.slo_ttft)
        _counts_check(mix, rng, 150, units)
        mix.reset()


def test_a_non_finite_ttft_slo_is_refused_in_one_line():
    """The observation counts requests in units of capacity x TTFT SLO: an infinite SLO would zero them."""
    with pytest.raises(ValueError, match=r"^KVAdmission: slo_ttft_s must be finite .* got inf$"):
        kva.KVAdmissionVecEnv(1, slo_ttft_s=float("inf"), **SMALL)


@pytest.mark.parametrize("field, value", [("drain_s", -1.0), ("drain_s", float("nan")), ("recompute_penalty", -0.5)])
def test_a_negative_drain_or_recompute_penalty_is_refused_in_one_line(field, value):
    """Both were taken: drain_s < 0 truncated each episode before its last arrival, and a recompute_penalty
    < 0 rewarded recomputed tokens (--env-kwargs drain_s=-1 printed a table). Routing-v0 and
    Disaggregation-v0 refused drain_s < 0 already. nan is refused by the config's type check
    (envs.config_check: a float field must be finite)."""
    says = "must be finite \\(float\\)" if value != value else "must be a number >= 0"
    with pytest.raises(ValueError, match=rf"^KVAdmission: {field} {says}, got {value!r}$"):
        kva.KVAdmissionVecEnv(1, **{field: value}, **SMALL)


@pytest.mark.parametrize("value", [0, -1])
def test_queue_slots_below_one_is_refused_naming_it(value):
    """Was the state allocator's 'allocate: n_envs, n_replicas, n_slots, n_requests must be >= 1, got 1, 1, 0, 64',
    naming no config field (Routing-v0 refused it already)."""
    with pytest.raises(ValueError, match=rf"^KVAdmission: queue_slots must be an integer >= 1, got {value}$"):
        kva.KVAdmissionVecEnv(1, queue_slots=value, **SMALL)


def _jsonl(path, rows) -> str:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_past_future_prior_counts_only_requests_the_engine_accepts(tmp_path):
    """Past-Future's prior (kv_admission.hist_prior) is the output histogram of the history's requests the
    engine accepts at arrival: a 200,000-token prompt (over Llama-3.1-8B's 131,072-token context) asking
    5,000 output tokens, rejected at arrival, leaves the prior of KVAdmission-v0 (one trace and a mixture
    part) and of MultiCluster-v0's admission seats as without it. On main it put 0.78 of the 100 prior
    requests in the 4,096-8,191 bin, which no accepted request reaches."""
    rng = np.random.default_rng(0)
    rows = [{"timestamp": 500 * i, "input_length": int(rng.integers(200, 2000)),
             "output_length": int(rng.integers(20, 600))} for i in range(128)]
    absent = _jsonl(tmp_path / "absent.jsonl", rows)
    big = dict(rows[40], input_length=200_000, output_length=5_000)
    with_it = _jsonl(tmp_path / "with.jsonl", rows[:40] + [big] + rows[40:])
    a, b = _assert_equal_priors(absent, with_it, {"split": "all", "window_requests": 64})
    assert b.hist_prior[12] == 0.0
    with pytest.raises(ValueError, match="accepted must be a bool array of the history's 3 requests"):
        kva.hist_prior(a.engine, make_trace(3, 1.0, 100, 10, poisson=False), np.ones(2, bool))



def _assert_equal_priors(absent: str, with_rows: str, kw: dict):
    """Past-Future's prior of the trace file ``with_rows`` equals that of ``absent`` (the same file without
    the rows it must leave out) for KVAdmission-v0 on one trace, for a workload mixture's part
    (envs.core.mixture.build_mixture's per_part) and for MultiCluster-v0's admission seats; returns the
    two single-trace scenarios."""
    from envs.multi.env import MultiCluster

    a = kva.build_scenario(kva.KVAdmissionConfig(trace=absent, **kw))
    b = kva.build_scenario(kva.KVAdmissionConfig(trace=with_rows, **kw))
    assert np.array_equal(a.hist_prior, b.hist_prior), (a.hist_prior, b.hist_prior)
    assert a.hist_prior.sum() == pytest.approx(100.0)
    am = kva.build_scenario(kva.KVAdmissionConfig(workloads=(absent,), **kw))
    bm = kva.build_scenario(kva.KVAdmissionConfig(workloads=(with_rows,), **kw))
    assert np.array_equal(am.part_hist_prior, bm.part_hist_prior)
    ma = MultiCluster(1, seed=0, trace=absent, replicas=2, **kw)
    mb = MultiCluster(1, seed=0, trace=with_rows, replicas=2, **kw)
    assert np.array_equal(ma.hist_prior, mb.hist_prior)
    return a, b


def _every_10th_failed_rows() -> list[dict]:
    """The rows of ../shared/cases/edge_output0_every10th.jsonl (Mooncake; every 10th request has output 0,
    which the reader flags failed), else rows of the same shape built here."""
    import json
    from pathlib import Path

    p = Path(__file__).resolve().parents[2] / "shared" / "cases" / "edge_output0_every10th.jsonl"
    if p.is_file():
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(1)
    return [{"timestamp": 300 * i, "input_length": int(rng.integers(200, 8000)),
             "output_length": 0 if i % 10 == 3 else int(rng.integers(1, 900))} for i in range(300)]


def test_past_future_prior_leaves_out_the_requests_the_trace_marks_failed(tmp_path):
    """Past-Future learns from finished requests' output lengths; a request the trace marks failed (BurstGPT's
    and Mooncake's output 0, ``Trace.failed``) ends at arrival with fate FAILED (envs.core.replica.enqueue) and
    never finishes, so the prior of KVAdmission-v0 (one trace and a mixture part) and of MultiCluster-v0's
    admission seats equals the prior of the trace without those rows. On main the 30 failed rows of 300 went
    to bin 0 (10 of the prior's 100 requests). The flag decides, not the length: a row marked failed that
    records 5,000 output tokens (a Trace built by hand) is left out too."""
    rows = _every_10th_failed_rows()
    with_failed = _jsonl(tmp_path / "with.jsonl", rows)
    absent = _jsonl(tmp_path / "absent.jsonl", [r for r in rows if r["output_length"] > 0])
    kw = {"split": "all", "window_requests": 128}
    a, b = _assert_equal_priors(absent, with_failed, kw)
    tr = traces.load_trace(with_failed)
    assert tr.failed.sum() == 30
    c = kva.build_scenario(kva.KVAdmissionConfig(
        trace=tr.replace(output_tokens=np.where(tr.failed, 5_000, tr.output_tokens)), **kw))
    assert c.hist_prior[12] == 0.0 and np.array_equal(a.hist_prior, c.hist_prior)
    # an explicit mask of the requests the engine accepts is combined with the trace's failed flags
    assert np.array_equal(kva.hist_prior(b.engine, tr, np.ones(len(tr), bool)), a.hist_prior)
    # a history whose every request failed serves none: the prior is taken over all of them (bin 0)
    none_served = tr.replace(failed=np.ones(len(tr), bool), output_tokens=np.zeros(len(tr), np.int64))
    assert kva.hist_prior(b.engine, none_served)[0] == pytest.approx(100.0)


def _admit_index(a: np.ndarray) -> np.ndarray:
    return np.array([kva.decode_action(int(x))[0] for x in np.atleast_1d(a)])


def _with_admit(a: int, admit: int) -> int:
    _, budget, defer, order = kva.decode_action(int(a))
    return kva.encode_action(int(admit), budget, defer, order)


def _lockstep(load: float):
    """Two single-env batches on the same episode (same seed, window and load)."""
    pair = [kva.KVAdmissionVecEnv(1, seed=3, **SMALL, load=load) for _ in range(2)]
    for v in pair:
        v.set_options({"window": 1, "load": load})
    return pair, [v.reset() for v in pair]


@pytest.mark.parametrize("load", [0.05, 1.5])
def test_a_masked_admit_level_plays_as_documented_never_refused(load):
    """The module docstring's and README's Action Space: a masked action is applied as given, never refused or
    remapped. A level above what can be admitted admits what the largest unmasked level admits, and a level > 0
    with nothing admissible admits nothing (away from an empty replica): random actions, masked ones included,
    play the same episode, step by step, as the same actions with each masked level replaced so."""
    (raw, remapped), (o1, o2) = _lockstep(load)
    rng = np.random.default_rng(7)
    played_masked = 0
    for _ in range(20_000):
        np.testing.assert_array_equal(o1, o2)
        mask = raw.action_masks()[0]
        per = kva.N_ACTIONS // len(kva.ADMIT_LEVELS)
        legal = np.flatnonzero(mask[::per])  # unmasked admit levels
        st = raw.state
        empty = st.n_running[0, 0] == 0 and st.n_queued[0, 0] == 0
        a = int(rng.integers(kva.N_ACTIONS))
        admit = kva.decode_action(a)[0]
        if not mask[a] and (admit == 0 or empty):  # the other two cases: the next test
            a = _with_admit(a, legal[-1])
        b = a
        if not mask[a]:
            played_masked += 1
            b = _with_admit(a, legal[-1] if legal[-1] > 0 else 0)
        o1, r1, d1, i1 = raw.step(np.array([a]))
        o2, r2, d2, i2 = remapped.step(np.array([b]))
        assert r1[0] == r2[0] and d1[0] == d2[0]
        if d1[0]:
            assert i1[0]["metrics"] == pytest.approx(i2[0]["metrics"], nan_ok=True)
            break
    assert d1[0] and played_masked > 50, played_masked


def test_a_masked_admit_zero_idles_and_a_masked_level_at_an_empty_replica_admits_its_arrivals():
    """The two masked cases with no unmasked twin: admit 0 while requests wait and none runs schedules nothing and
    lets time pass; a level > 0 at an empty replica (only admit 0 is unmasked there) admits the requests arriving at
    the start of its iteration, where admit 0 waits for them one decision."""
    (a_env, b_env), _ = _lockstep(0.05)  # a replica often empty between arrivals
    fcfs_all = kva.encode_action(len(kva.ADMIT_LEVELS) - 1, 1, False, 0)
    checked = {"idle": False, "empty": False}
    for _ in range(20_000):
        mask = a_env.action_masks()[0]
        st = a_env.state
        n_run, n_q, clock = int(st.n_running[0, 0]), int(st.n_queued[0, 0]), float(st.clock[0])
        if n_run == 0 and n_q > 0 and not checked["idle"]:
            zero = _with_admit(fcfs_all, 0)
            assert not mask[zero]
            a_env.step(np.array([zero]))
            b_env.step(np.array([zero]))
            after = a_env.state
            assert after.n_running[0, 0] == 0 and after.n_queued[0, 0] >= n_q and after.clock[0] > clock
            checked["idle"] = True
        elif n_run == 0 and n_q == 0 and not checked["empty"]:
            assert not mask[fcfs_all] and mask[_with_admit(fcfs_all, 0)]
            a_env.step(np.array([fcfs_all]))
            b_env.step(np.array([_with_admit(fcfs_all, 0)]))
            assert a_env.state.n_running[0, 0] > 0 and b_env.state.n_running[0, 0] == 0
            checked["empty"] = True
            break
        else:
            legal = np.flatnonzero(mask)
            _, _, done, _ = a_env.step(legal[-1:])
            b_env.step(legal[-1:])
            assert not done[0]
    assert all(checked.values()), checked


@pytest.mark.parametrize("value", [0, -1, 2**17 + 1])
def test_capacity_requests_outside_the_stream_range_is_refused_naming_it(value):
    with pytest.raises(ValueError, match=rf"^KVAdmission: capacity_requests must be an integer in \[1, 131072\] "
                                         rf"\(the capacity measurement's stream; envs.core.capacity.MAX_STREAM\), "
                                         rf"got {value}$"):
        kva.KVAdmissionVecEnv(1, capacity_requests=value, **SMALL)


def test_capacity_requests_sets_the_load_unit_stream_alone_and_in_a_mixture():
    """The load unit measured on the stream length the scenario asks for, on a single trace and on
    every part of a workload mixture; 2,048 (the default) gives the figure it always did. The test
    trace's training part (1,408 requests) is cycled to the stream: 2,048 and 4,096 both end at
    48.18 requests/s, 8,192 at 47.94."""
    from envs.core.capacity import CAPACITY_REQUESTS, measure_capacity_rps
    from envs.core.workload import build_workload

    default = kva.build_scenario(kva.KVAdmissionConfig(**SMALL))
    longer = kva.build_scenario(kva.KVAdmissionConfig(capacity_requests=8192, **SMALL))
    history, _ = kva.load_split(kva.KVAdmissionConfig(**SMALL), "KVAdmission")
    cap_wl, _ = build_workload(history, 64, 0.7, 0)
    assert CAPACITY_REQUESTS == 2048
    assert default.capacity_rps == measure_capacity_rps(default.engine, cap_wl)
    assert longer.capacity_rps == measure_capacity_rps(longer.engine, cap_wl, max_requests=8192)
    assert longer.capacity_rps != default.capacity_rps
    kw = dict(capacity_requests=8192, window_requests=128)
    mixed = kva.build_scenario(kva.KVAdmissionConfig(workloads=("azure_conv", "azure_code"), **kw))
    alone = [kva.build_scenario(kva.KVAdmissionConfig(trace=t, **kw)).capacity_rps for t in ("azure_conv", "azure_code")]
    assert mixed.part_capacity_rps.tolist() == alone
