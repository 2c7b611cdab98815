"""Disaggregation-v0: engine times, KV transfer, invariants across handovers, DistServe's result,
API checks and the baselines (small clusters and short episodes; fast)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

import hwmodels
import traces
from envs.core import state as S
from envs.core.engine import DEFAULT_PROFILE
from envs.disaggregation import DisaggregationEnv, DisaggregationVecEnv
from envs.disaggregation import kernels as K
from envs.disaggregation.env import ENV_ID
from envs.disaggregation.invariants import violations as handover_violations
from envs.disaggregation.scenario import link_matrix

P, D, C = K.ROLE_PREFILL, K.ROLE_DECODE, K.ROLE_COLOCATED
SMALL = dict(instances=3, phases=2, phase_s=20.0, interval_s=5.0, load=0.6, episodes_per_load=2,
             drain_s=30.0, switch_s=3.0)


def sparse_trace() -> traces.Trace:
    """Requests 100 s apart: each one is served alone."""
    prompt = np.array([1000, 3000, 9000, 500, 20000, 64, 7000, 2500, 12000, 800], np.int64)
    out = np.array([50, 20, 3, 100, 2, 40, 8, 30, 5, 60], np.int64)
    t = np.arange(len(prompt), dtype=np.float64) * 100.0
    return traces.Trace(t, prompt, out, traces.TraceMeta("sparse", "tests", "n/a"))


def run_static(env, roles, rule=0):
    E = env.num_envs
    a = np.tile(np.append(roles, rule), (E, 1)).astype(np.int64)
    out = [None] * E
    while any(o is None for o in out):
        _, _, done, infos = env.step(a)
        for e in np.flatnonzero(done):
            if out[e] is None:
                out[e] = infos[e]
    return out


def isolated_env(roles, **kw):
    cfg = dict(trace=sparse_trace(), shift_trace=None, split="all", instances=len(roles), phases=1,
               phase_s=800.0, interval_s=100.0, load=0.002, episodes_per_load=1, first_token="prefill",
               layerwise_transfer=False, drain_s=200.0)
    cfg.update(kw)
    env = DisaggregationVecEnv(1, seed=0, **cfg)
    env.reset()
    return env


@pytest.mark.parametrize("gpus_per_node", [8, 1])
def test_prefill_and_decode_instances_reproduce_engine_times_and_link_model(gpus_per_node):
    env = isolated_env([P, D], gpus_per_node=gpus_per_node)
    info = run_static(env, np.array([P, D]))[0]
    rec = info["requests"]
    sc, cfg = env.scenario, env.config
    w = int(env.state.window[0])
    stm = hwmodels.StepTimeModel(cfg.model, cfg.gpu, cfg.tp, profile=DEFAULT_PROFILE)
    bw, lat = link_matrix(cfg)
    kvb = hwmodels.kv_bytes_per_token(cfg.model, cfg.tp)
    n = int(sc.workload.n_requests[w])
    assert n >= 3 and np.all(rec["fate"] == S.FINISHED)
    moved = 0
    for i in range(n):
        p, o = int(sc.workload.prompt[w, i]), int(sc.workload.output[w, i])
        assert rec["ttft"][i] == pytest.approx(stm.prefill_time(p, chunk_size=cfg.budget), rel=1e-9)
        t_x = hwmodels.kv_transfer_time(p * kvb, float(bw[0, 1]), lat)
        decode = sum(stm.iteration_time(0, 0, 1, p + j, p + j) for j in range(1, o))
        assert rec["e2e"][i] - rec["ttft"][i] == pytest.approx(t_x + decode, rel=1e-9)
        moved += p * kvb
    m = info["metrics"]
    assert m["kv_bytes_transferred"] == pytest.approx(moved)
    assert m["kv_transfers"] == n
    # across nodes the NIC is the link; inside a node NVLink
    expect = 0.5 * hwmodels.get_gpu(cfg.gpu).scaleup_bw if gpus_per_node == 8 else 50e9
    assert bw[0, 1] == pytest.approx(expect * hwmodels.default_calibration().comm_eff)


def test_colocated_instance_is_the_single_replica_engine():
    env = isolated_env([C, C])
    rec = run_static(env, np.array([C, C]))[0]["requests"]
    sc, cfg = env.scenario, env.config
    w = int(env.state.window[0])
    stm = hwmodels.StepTimeModel(cfg.model, cfg.gpu, cfg.tp, profile=DEFAULT_PROFILE)
    for i in range(int(sc.workload.n_requests[w])):
        p, o = int(sc.workload.prompt[w, i]), int(sc.workload.output[w, i])
        assert rec["ttft"][i] == pytest.approx(stm.prefill_time(p, chunk_size=cfg.budget), rel=1e-9)
        decode = sum(stm.iteration_time(0, 0, 1, p + j, p + j) for j in range(1, o))
        assert rec["e2e"][i] - rec["ttft"][i] == pytest.approx(decode, rel=1e-9)
        if o > 1:
            assert rec["tpot"][i] == pytest.approx(decode / (o - 1), rel=1e-9)


def test_layerwise_transfer_exposes_at_most_the_transfer():
    env = isolated_env([P, D], layerwise_transfer=True, first_token="decode")
    m = run_static(env, np.array([P, D]))[0]["metrics"]
    lw = m["kv_transfer_exposed_s_mean"]
    env2 = isolated_env([P, D], layerwise_transfer=False, first_token="decode")
    full = run_static(env2, np.array([P, D]))[0]["metrics"]["kv_transfer_exposed_s_mean"]
    assert 0 < lw < full


def check_invariants(env):
    st, ds = env.state, env.dstate
    cap = env.scenario.engine.capacity_blocks
    for e in range(env.num_envs):
        w = int(st.window[e])
        in_system = set()
        for r in range(env.R):
            status = st.status[e, r]
            held = (status == K.HELD) | (status == K.SENDING)
            assert st.free_blocks[e, r] >= 0
            assert st.free_blocks[e, r] + st.blocks[e, r][status != S.FREE].sum() == cap
            assert (status == S.QUEUED).sum() == st.n_queued[e, r]
            assert (status == S.RUNNING).sum() == st.n_running[e, r]
            assert held.sum() == ds.n_held[e, r]
            assert (status == K.INCOMING).sum() == ds.n_incoming[e, r]
            mine = st.req[e, r][(status == S.QUEUED) | (status == S.RUNNING) | held]
            assert not (set(mine.tolist()) & in_system), "a request in two places"
            in_system |= set(mine.tolist())
        arrived = int(st.next_arrival[e])
        fate = st.fate[e, :arrived]
        assert (fate == S.DROPPED).sum() == 0
        finished = set(np.flatnonzero(np.isin(fate, (S.FINISHED, S.FAILED, S.REJECTED))).tolist())
        assert not (finished & in_system)
        assert len(finished) + len(in_system) == arrived, "request conservation"
        assert np.all(st.fate[e, arrived:] == S.PENDING)
        assert ds.n_xf[e] == sum(ds.n_incoming[e]) and ds.n_xf[e] <= sum(ds.n_held[e])
        assert int(env.scenario.workload.n_requests[w]) >= arrived


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st_.lists(st_.lists(st_.integers(0, 2), min_size=4, max_size=4), min_size=3, max_size=8),
       st_.integers(0, 1), st_.integers(0, 2**16))
def test_conservation_and_kv_capacity_across_handovers(role_seq, rule, seed):
    env = DisaggregationVecEnv(2, seed=seed, capacity_blocks=2200, queue_slots=64, **SMALL)
    env.reset()
    R = env.R
    clock = env.state.clock.copy()
    for t in range(env.config.decisions + 1):
        roles = np.array(role_seq[t % len(role_seq)][:R])
        a = np.tile(np.append(roles, rule), (2, 1)).astype(np.int64)
        a[1, :R] = np.roll(roles, 1)
        _, _, done, infos = env.step(a)
        check_invariants(env)
        assert not handover_violations(env)  # envs.fuzz's check agrees with this test's
        for e in range(2):
            if done[e]:
                m = infos[e]["metrics"]
                assert m["finished"] + m["unfinished"] + m["failed"] + m["rejected"] == m["requests"]
                clock[e] = 0.0
            else:
                assert env.state.clock[e] >= clock[e]
                clock[e] = env.state.clock[e]


def test_role_change_drains_then_warms_up():
    env = DisaggregationVecEnv(1, seed=0, **SMALL)
    env.reset()
    a = np.array([[C, C, C, 0]])
    env.step(a)
    env.step(np.array([[P, D, D, 0]]))
    assert env.dstate.acc[0, K.X_ROLE_CHANGES] == 3
    assert np.all(env.dstate.phase[0] != K.ACTIVE) or np.all(env.dstate.target[0] == [P, D, D])
    # the invalid vector (nothing decodes) is rejected as a whole
    env.step(np.array([[P, P, P, 0]]))
    assert env.dstate.acc[0, K.X_REJECTED] == 1
    assert np.all(env.dstate.target[0] == [P, D, D])


def _best_split_vs_colocated(**kw):
    env = DisaggregationVecEnv(2, seed=0, window_order="sequential", **kw)
    env.reset()
    R = env.R
    plans = [np.full(R, C)] + [np.array([P] * p + [D] * (R - p)) for p in range(1, R)]
    good = []
    for roles in plans:
        env.set_options([{"window": 0}, {"window": 1}])
        env.reset()
        good.append(np.mean([i["metrics"]["goodput_per_gpu"] for i in run_static(env, roles)]))
    return good[0], max(good[1:])


DISTSERVE = dict(instances=4, phases=2, phase_s=40.0, interval_s=10.0, episodes_per_load=2, drain_s=60.0)


def test_distserve_tight_slos_disaggregation_beats_colocation():
    coloc, disagg = _best_split_vs_colocated(load=0.5, slo_ttft_s=0.5, slo_tpot_s=0.03, **DISTSERVE)
    assert disagg > 1.2 * coloc


def test_distserve_loose_slos_colocation_at_least_as_good():
    coloc, disagg = _best_split_vs_colocated(load=0.8, slo_ttft_s=5.0, slo_tpot_s=0.2, **DISTSERVE)
    assert coloc >= disagg


def test_gymnasium_and_sb3_check_env():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = gym.make(ENV_ID, **SMALL)
    gym_check(env.unwrapped, skip_render_check=True)
    sb3_check(DisaggregationEnv(**SMALL), warn=False)


def test_native_vecenv_equals_single_copies():
    E = 3
    vec = DisaggregationVecEnv(E, seed=1, **SMALL)
    eps = [{"window": 0}, {"window": 1}, {"window": 1}]
    vec.set_options(eps)
    obs_v = vec.reset()
    singles = []
    for e in range(E):
        s = DisaggregationVecEnv(1, seed=1, **SMALL)
        s.set_options(eps[e])
        singles.append(s)
    obs_s = [s.reset() for s in singles]
    np.testing.assert_array_equal(obs_v, np.concatenate(obs_s))
    rng = np.random.default_rng(0)
    for _ in range(vec.config.decisions):
        a = np.concatenate([rng.integers(0, 3, (E, vec.R)), rng.integers(0, 2, (E, 1))], axis=1)
        o, r, d, _ = vec.step(a)
        for e, s in enumerate(singles):
            o1, r1, d1, _ = s.step(a[e : e + 1])
            np.testing.assert_array_equal(o[e], o1[0])
            assert r[e] == r1[0] and d[e] == d1[0]


def test_same_seed_same_result():
    def run():
        env = DisaggregationVecEnv(2, seed=7, **SMALL)
        env.reset()
        return [run_static(env, np.array([P, D, D]))[e]["metrics"] for e in range(2)]

    assert run() == run()


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="instances"):
        DisaggregationVecEnv(1, instances=1)
    with pytest.raises(ValueError, match="first_token"):
        DisaggregationVecEnv(1, first_token="later")
    with pytest.raises(TypeError, match="replicas"):
        DisaggregationVecEnv(1, replicas=4)
    with pytest.raises(TypeError, match="slo_metric"):  # fixed to the TTFT + TPOT check, not a field
        DisaggregationVecEnv(1, slo_metric="p99_tbt")
    env = DisaggregationVecEnv(1, **SMALL)
    env.reset()
    with pytest.raises(ValueError, match="component 2 is 3"):
        env.step(np.array([[0, 1, 3, 0]]))



@pytest.mark.parametrize("field", ["slo_ttft_s", "slo_tpot_s"])
@pytest.mark.parametrize("value", [0.0, -0.5, float("inf"), float("nan"), 1e-300, True])
def test_bad_slo_is_rejected_naming_the_field(field, value):
    # inf made ttft_headroom / tpot_headroom infinite; 1e-300 overflowed TTFT / SLO in the float32 observation.
    # Not a finite float at all (inf, nan, True): the config's type check (envs.config_check) names it first.
    says = (f"{field} must be None or a finite number of seconds >= 1e-06" if value is not True and value == value
            and abs(value) != float("inf") else rf"^Disaggregation: {field} must be (finite )?\(?float \| None\)?, got")
    with pytest.raises((ValueError, TypeError), match=says):
        DisaggregationVecEnv(1, **{field: value})


@pytest.mark.parametrize("slo", [dict(slo_ttft_s=1e-6, slo_tpot_s=1e-6), dict(slo_ttft_s=1e9, slo_tpot_s=1e9)])
def test_observation_stays_finite_at_the_extreme_slos_accepted(slo):
    env = DisaggregationVecEnv(1, seed=0, **SMALL, **slo)
    obs = env.reset()
    head = [K.GLOBAL_FEATURES.index("ttft_headroom"), K.GLOBAL_FEATURES.index("tpot_headroom")]
    assert np.isfinite(obs).all() and np.abs(obs[0, head]).min() > 1.5  # extreme, stated, not clamped
    for _ in range(4):
        obs, rew, _, _ = env.step(np.array([[P, D, C, 0]]))
        assert np.isfinite(obs).all() and np.isfinite(rew).all()


def _trace(t, name):
    n = len(t)
    return traces.Trace(np.asarray(t, np.float64), np.full(n, 500, np.int64), np.full(n, 50, np.int64),
                        traces.TraceMeta(name, "tests", "n/a"))


def test_a_trace_part_with_one_arrival_instant_is_an_error_not_an_endless_loop():
    # 140 requests 0.5 s apart, then 60 at one instant: the held-out part (the last 30% of the
    # time span) has every arrival at t = 200 s; _phase_segment used to double its index array
    # until memory ran out
    t = np.concatenate([np.arange(140) * 0.5, np.full(60, 200.0)])
    kw = dict(SMALL, trace=_trace(t, "tail_burst"), shift_trace=None)
    with pytest.raises(ValueError, match="trace 'tail_burst': its test part \\(60 requests\\) has all arrivals at one"):
        DisaggregationVecEnv(1, split="test", **kw)
    DisaggregationVecEnv(1, split="train", **kw)  # the training part is fine


def test_a_trace_too_short_for_the_capacity_measurement_names_the_trace():
    kw = dict(SMALL, trace=_trace(np.arange(5) * 10.0, "five"), shift_trace=None)
    with pytest.raises(ValueError, match="trace 'five': its training part .* has 3 requests; .* at least 4") as err:
        DisaggregationVecEnv(1, split="test", **kw)
    # the kind of trace (too short), so the leaderboard skips Disaggregation's --trace scenarios on it
    from envs.core.workload import TraceUnsuited

    assert isinstance(err.value, TraceUnsuited)
    assert (err.value.needs, err.value.has) == (
        "at least 4 requests in its training part (held_out_frac=0.3) to measure an instance's capacity",
        "has 3 there")
    # split='all' plays the whole trace: no held_out_frac in the message, one request is one request
    with pytest.raises(ValueError, match=r"^Disaggregation: trace 'one': its whole part has 1 request; the capacity "
                                         r"measurement needs at least 4$"):
        DisaggregationVecEnv(1, split="all", **dict(kw, trace=_trace(np.zeros(1), "one")))

def test_oracle_candidates_are_every_serving_count_of_roles():
    from agents.heuristics.disaggregation import candidate_plans

    for R in (2, 3, 8):
        plans = candidate_plans(R)
        counts = {tuple(np.bincount(p, minlength=3)) for p in plans}
        want = {(p, d, R - p - d) for p in range(R + 1) for d in range(R + 1 - p)} - {(R, 0, 0), (0, R, 0)}
        assert counts == want and len(plans) == len(want)  # each (prefill, decode, colocated) count once
        assert (plans[0] == C).all()  # all colocated first


def test_baselines_and_oracles_run_and_rank():
    from agents.policy import make_policy

    kw = dict(SMALL, instances=4, slo_ttft_s=0.5, slo_tpot_s=0.05)
    env = DisaggregationVecEnv(1, seed=0, **kw)
    scores = {}
    for name in ("colocated", "fixed_1_1", "fixed_1_3", "distserve", "splitwise", "pd_serve", "static_best",
                 "oracle_dp"):
        env.set_options({"window": 0})
        obs = env.reset()
        pol = make_policy(name, env, ENV_ID)
        while True:
            a = pol.act(obs, env.action_masks())
            assert a.shape == (1, env.R + 1)
            obs, _, done, infos = env.step(a)
            if done[0]:
                scores[name] = infos[0]["metrics"]["goodput_per_gpu"]
                break
    static = [scores[n] for n in ("colocated", "fixed_1_1", "fixed_1_3", "distserve")]
    assert scores["static_best"] >= max(static) - 1e-9  # it searched every static split on this episode
    assert scores["oracle_dp"] >= scores["static_best"] - 1e-9


PLAIN_MLP = ["policy='MlpPolicy'", "policy_kwargs={'net_arch': [64, 64]}"]


@pytest.mark.parametrize("hyperparams", [PLAIN_MLP, []], ids=["mlp", "sticky_roles_default"])
def test_onnx_export_parity_on_real_observations(tmp_path, hyperparams):
    """A short MaskablePPO run (train.py, the default algorithm; SB3's plain MLP policy and the
    default keep-role prior of agents.sticky_roles) exports through agents.export; onnxruntime and SB3
    agree on observations the environment emits, with the env's names."""
    from agents import export as X
    from agents import train
    from agents.onnx_policy import OnnxPolicy
    from agents.sb3_policy import algo_class

    kw = [f"{k}={v}" for k, v in SMALL.items()]
    hp = ["--hyperparams", *hyperparams] if hyperparams else []
    with X.torch_one_thread():
        assert train.main(["--env", ENV_ID, "--timesteps", "64", "--n-envs", "2", "--no-eval", "--no-progress",
                           "--out", str(tmp_path), "--seed", "1", "--env-kwargs", *kw, *hp]) == 0
    out = tmp_path / "p.onnx"
    parity = X.export(ENV_ID, str(tmp_path / "final.zip"), out, parity_obs=600)
    assert parity.ok and parity.n_obs == 600 and parity.mismatches == 0 and parity.max_abs_diff <= X.ATOL
    assert parity.decided > 0.9 * parity.n_obs  # the check is not vacuous
    p = OnnxPolicy(out)
    env = DisaggregationVecEnv(1, **SMALL)
    assert p.observation_features == env.feature_names() and p.action_meanings == env.action_meanings()
    assert p.metadata["env_id"] == ENV_ID and p.metadata["algorithm"] == "maskable-ppo"
    model = algo_class("maskable-ppo").load(tmp_path / "final.zip", device="cpu")
    assert type(model.policy).__name__ == ("MaskableActorCriticPolicy" if hyperparams else "StickyRolePolicy")
    obs, mask = X.collect_observations(ENV_ID, 96, model, seed=5, n_envs=4, **SMALL)
    assert obs.shape == (96, K.G + 3 * K.F) and np.abs(obs).sum() > 0
    sb3, _ = model.predict(obs, deterministic=True, action_masks=mask)
    a = p.act(obs, mask)
    assert a.shape == (96, 4)  # roles of 3 instances + the dispatch rule
    np.testing.assert_array_equal(a, sb3)


def test_llama70b_tp4_scenarios_quick():
    """The Llama-3.1-70B TP=4 leaderboard family (8 instances on 32 H100s, 4 nodes), quick variant:
    the cluster is what the id says, the baselines and oracles run through the leaderboard's own
    path and rank as they must; under MLPerf's interactive SLOs disaggregation beats colocation."""
    from agents import leaderboard as lb
    from agents.scenarios import SCENARIOS

    fam = [s for s in SCENARIOS if "llama3.1-70b-tp4-h100x32" in s.id]
    assert len(fam) == 2
    for sc in fam:
        env = DisaggregationVecEnv(1, split="test", **sc.kwargs(quick=True))
        assert env.scenario.n_gpus == 32 and env.R == 8 and env.config.tp == 4
        bw = env.scenario.link_bw
        assert bw[0, 1] > bw[0, 2]  # instances 0, 1 share node 0 (NVLink); 2 is on node 1 (NIC)
        good = {p: lb.run_policy(sc, p, quick=True, episodes=None).episodes[0]["goodput_per_gpu"]
                for p in ("colocated", "distserve", "static_best", "oracle_dp")}
        assert good["static_best"] >= max(good["colocated"], good["distserve"]) - 1e-9
        assert good["oracle_dp"] >= good["static_best"] - 1e-9
        if "interactive" in sc.id:
            assert good["distserve"] > 1.5 * good["colocated"]


def test_masks_hold_the_target_of_a_switching_instance():
    env = DisaggregationVecEnv(1, seed=0, **dict(SMALL, switch_s=30.0))
    env.reset()
    assert env.action_masks().all()
    env.step(np.array([[P, D, C, 0]]))  # the first decision places the roles at no cost
    assert env.action_masks().all()
    env.step(np.array([[D, D, C, 0]]))  # instance 0: prefill -> decode, 30 s warm-up > the 5 s interval
    m = env.action_masks()[0]
    assert env.dstate.phase[0, 0] != K.ACTIVE and env.dstate.role[0, 0] == P
    np.testing.assert_array_equal(m[:3], [False, True, False])  # only the target (decode)
    assert m[3:].all()  # the other instances and the rule are free
    env.step(np.array([[P, D, C, 0]]))  # the env still applies a masked action (policies without masks)
    assert env.dstate.target[0, 0] == P


def test_sticky_role_prior_keeps_roles_and_refuses_other_layouts():
    import torch as th
    from gymnasium import spaces
    from sb3_contrib import MaskablePPO

    from agents.sticky_roles import StickyRolePolicy, prior_matrix

    env = DisaggregationVecEnv(2, seed=0, **dict(SMALL, switch_s=30.0))
    model = MaskablePPO(StickyRolePolicy, env, n_steps=8, batch_size=16, device="cpu", seed=0,
                        policy_kwargs={"keep_logit": 3.0})
    obs = env.reset()
    dist = model.policy.get_distribution(th.as_tensor(obs))
    keep = np.exp(3.0) / (np.exp(3.0) + 2.0)
    for r in range(env.R):  # all colocated at reset: the prior favours colocated
        np.testing.assert_allclose(dist.distributions[r].probs.detach().numpy()[:, C], keep, atol=0.01)
    np.testing.assert_allclose(dist.distributions[env.R].probs.detach().numpy(), 0.5, atol=0.01)  # the rule
    obs, *_ = env.step(np.array([[P, D, C, 0]] * 2))
    obs, *_ = env.step(np.array([[D, D, C, 0]] * 2))  # instance 0 switching: no prior on it
    p0 = model.policy.get_distribution(th.as_tensor(obs)).distributions[0].probs.detach().numpy()
    np.testing.assert_allclose(p0, 1.0 / 3.0, atol=0.01)
    with pytest.raises(ValueError, match="layout"):
        prior_matrix(K.G + 3 * K.F + 1, np.array([3, 3, 3, 2]), 3.0)
    with pytest.raises(ValueError, match="keep_logit"):
        StickyRolePolicy(env.observation_space, env.action_space, lambda _: 3e-4, keep_logit=-1.0)
    with pytest.raises(ValueError, match="MultiDiscrete"):
        StickyRolePolicy(env.observation_space, spaces.Discrete(4), lambda _: 3e-4)


def test_oracle_shards_preloaded_give_the_same_episodes(monkeypatch):
    """The leaderboard's Ray path hands an oracle its candidate replays computed as shards
    (agents.leaderboard.run_shard): the episodes equal those of an oracle that replays alone."""
    from agents import leaderboard
    from agents.heuristics import disaggregation as H
    from agents.policy import shard_spec

    sc = next(s for s in leaderboard.scenarios_for(["Disaggregation"]) if s.in_quick)
    assert shard_spec(sc.env_id, "oracle_dp") == ("disaggregation.candidate_replays", H.CANDIDATE_SHARDS)
    assert shard_spec(sc.env_id, "colocated") is None and shard_spec(sc.env_id, "random") is None
    H._REPLAYS.clear()
    alone = leaderboard.run_policy(sc, "oracle_dp", True, 1)
    H._REPLAYS.clear()
    shards = [leaderboard.run_shard(sc, "static_best", True, 1, k) for k in range(H.CANDIDATE_SHARDS)]
    assert [part for _, part, _, _ in shards] == list(range(H.CANDIDATE_SHARDS))
    assert not H._REPLAYS  # shards are computed apart, not stored where they ran
    replayed = []
    real = H.replay
    monkeypatch.setattr(H, "replay", lambda cfg, eps, plans, *a: replayed.append(len(plans)) or real(cfg, eps, plans, *a))
    preloaded = leaderboard.run_policy(sc, "oracle_dp", True, 1, shards=shards)
    assert preloaded.episodes == alone.episodes
    assert replayed == [1]  # only the DP plan's own check; the candidates came from the shards
    with pytest.raises(IndexError, match="shard 4 out of range"):
        leaderboard.run_shard(sc, "oracle_dp", True, 1, H.CANDIDATE_SHARDS)
    with pytest.raises(ValueError, match="slice 0 of episode .* twice"):
        leaderboard.run_policy(sc, "oracle_dp", True, 1, shards=shards + shards[:1])


def test_zoo_agent_on_another_instance_count_is_a_one_line_usage_error(capsys):
    # SB3 used to fail deep in predict ("Unexpected observation shape (1, 48) for Box environment")
    from agents.evaluate import main
    from agents.policy import make_policy
    from agents.policy_base import PolicyMismatch

    with pytest.raises(PolicyMismatch, match=r"disaggregation_dagger.zip: trained on observations \('Box', \(84,\)\)"):
        make_policy("zoo", DisaggregationVecEnv(1, **SMALL), ENV_ID)
    kw = [f"{k}={v}" for k, v in SMALL.items()]
    with pytest.raises(SystemExit) as exc:
        main(["--env", ENV_ID, "--policy", "zoo", "--episodes", "1", "--env-kwargs", *kw])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("python -m agents.evaluate: error: --policy: ") and "(39,)" in err


def test_splitwise_needs_three_pools():
    """Splitwise's prompt, token and mixed pools need 3 instances: on 2 it says so (the CLIs turn
    PolicyMismatch into a one-line usage error) instead of searching an empty set of splits."""
    from agents.policy import make_policy
    from agents.policy_base import PolicyMismatch
    from agents.heuristics.disaggregation import offline_search

    env = DisaggregationVecEnv(1, seed=0, **dict(SMALL, instances=2))
    with pytest.raises(PolicyMismatch, match="instances >= 3.*instances=2"):
        make_policy("splitwise", env, ENV_ID)
    with pytest.raises(ValueError, match="instances=2 leaves no prefill and decode"):
        offline_search(env.config, n_mixed=1)


def test_phase_segment_offers_its_rate_in_requests_the_engine_accepts() -> None:
    """A part whose every 4th prompt is over the 131,072-token context: the phase's arrivals are scaled
    so that the accepted requests arrive at the asked rate (the rejected ones arrive besides, counted as
    rejected), as build_workload's natural rates count accepted requests only (../shared/cases/
    edge_prompt_200k.jsonl); without ``accepted`` every arrival counts."""
    from conftest import make_trace
    from envs.core.engine import EngineSpec
    from envs.core.replica import accepted_at_arrival
    from envs.disaggregation.scenario import _phase_segment

    tr = make_trace(400, 1.0, 100, 10, poisson=False)
    prompt = tr.prompt_tokens.copy()
    prompt[::4] = 200_000
    tr = tr.replace(prompt_tokens=prompt)
    ok = accepted_at_arrival(EngineSpec().build(), tr.prompt_tokens, tr.output_tokens)
    assert ok.sum() == 300
    t, idx, _ = _phase_segment(tr, 10.0, 100.0, np.random.default_rng(0), int(ok.sum()))
    assert ok[idx].sum() == pytest.approx(1000, abs=3)  # 10 accepted requests/s over 100 s
    assert len(idx) == pytest.approx(1330, abs=3)
    t_all, idx_all, _ = _phase_segment(tr, 10.0, 100.0, np.random.default_rng(0))
    assert len(idx_all) == pytest.approx(1000, abs=3)


def test_evaluate_refuses_a_trace_whose_training_part_is_too_short_for_distserves_search(tmp_path, capsys):
    """agents.evaluate --split all on a file whose training part (first 70%) has fewer than 4 requests: DistServe's
    offline search simulates that part, and the run ended in a TraceUnsuited traceback after the policies before
    it had played (../shared/cases/burstgpt_zero_request.csv); now one line naming the policy, before any run."""
    import json

    from agents.evaluate import main

    f = tmp_path / "five.jsonl"
    f.write_text("".join(json.dumps({"timestamp": t, "input_length": 500, "output_length": 50}) + "\n"
                         for t in (0, 1000, 8000, 9000, 10000)))
    with pytest.raises(SystemExit) as exc:
        main(["--env", "Disaggregation", "--trace", str(f), "--split", "all", "--policy", "colocated",
              "--policy", "distserve", "--episodes", "1"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and captured.out == "", (err, captured.out)
    assert err[0].startswith("python -m agents.evaluate: error: --policy distserve (searches on the trace's training "
                             "part, split=train): --trace ") and "has 2 requests" in err[0], err
