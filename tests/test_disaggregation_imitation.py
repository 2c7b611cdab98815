"""Disaggregation-v0's imitation recipe: the oracle's DP (viterbi), the teacher (agents.disaggregation_teacher),
DAgger over MultiDiscrete actions (agents/imitation.py), the family batch (agents.family_vec) and
train.py --scenarios / --imitate (small clusters, short episodes; fast)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import envs
from agents import disaggregation_teacher as T
from agents.family_vec import FamilyVecEnv, family_specs, make_family_vec
from agents.heuristics import disaggregation as H
from agents.imitation import component_legal, imitate
from agents.training import make_model
from envs.disaggregation import DisaggregationVecEnv
from envs.disaggregation import kernels as K
from envs.disaggregation.env import ENV_ID

P, D, C = K.ROLE_PREFILL, K.ROLE_DECODE, K.ROLE_COLOCATED


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small MLPs: one torch thread (as train.py --threads 1); more only contend on a shared box."""
    import torch as th

    n = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n)


TINY = dict(instances=3, phases=2, phase_s=20.0, interval_s=5.0, load=0.6, episodes_per_load=2,
            drain_s=30.0, switch_s=3.0)


def _path_value(v, cost, path):
    return sum(v[k, t] for t, k in enumerate(path)) - sum(cost[a, b] for a, b in zip(path, path[1:]))


def test_viterbi_is_the_best_path_by_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        Kn, Tn = 3, 4
        v = rng.normal(size=(Kn, Tn))
        cost = rng.uniform(0, 1, size=(Kn, Kn))
        np.fill_diagonal(cost, 0)
        best = max(itertools.product(range(Kn), repeat=Tn), key=lambda p: _path_value(v, cost, p))
        path = H.viterbi(v, cost)
        assert _path_value(v, cost, path) == pytest.approx(_path_value(v, cost, best))
        fixed = H.viterbi(v, cost, start=2)
        best2 = max((p for p in itertools.product(range(Kn), repeat=Tn) if p[0] == 2),
                    key=lambda p: _path_value(v, cost, p))
        assert fixed[0] == 2 and _path_value(v, cost, fixed) == pytest.approx(_path_value(v, cost, best2))


def test_component_legal_reads_the_flat_masks():
    nvec = np.array([3, 3, 2])
    masks = np.ones((2, 8), bool)
    masks[0, 0:3] = [False, True, False]  # component 0 of env 0: only 1 legal
    a = np.array([[0, 2, 1], [0, 2, 1]])
    assert component_legal(a, masks, nvec).tolist() == [[False, True, True], [True, True, True]]


def test_family_vec_of_one_config_is_the_plain_batch():
    """Two parts of one config seeded s and s + 2 step as one batch of 4 seeded s (same actions)."""
    plain = DisaggregationVecEnv(4, seed=5, **TINY)
    fam = FamilyVecEnv([DisaggregationVecEnv(2, seed=5, **TINY), DisaggregationVecEnv(2, seed=7, **TINY)])
    assert fam.num_envs == 4
    o1, o2 = plain.reset(), fam.reset()
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = np.concatenate([rng.integers(0, 3, (4, 3)), rng.integers(0, 2, (4, 1))], axis=1)
        r1, r2 = plain.step(a), fam.step(a)
        for x, y in zip(r1[:3], r2[:3]):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(plain.action_masks(), fam.action_masks())
        np.testing.assert_array_equal(np.stack(fam.env_method("action_masks")), fam.action_masks())
    assert [fam.episode_of(e) for e in range(4)] == [plain.episode_of(e) for e in range(4)]
    assert fam.config_of(3) == plain.config


def test_family_vec_rejects_different_spaces_and_bad_splits():
    with pytest.raises(ValueError, match="has spaces"):
        FamilyVecEnv([DisaggregationVecEnv(1, **TINY), DisaggregationVecEnv(1, **{**TINY, "instances": 4})])
    specs = family_specs(ENV_ID, ["disaggregation/*8b*"])
    assert len(specs) == 2 and all("llama3.1-8b" in s.name for s in specs)
    with pytest.raises(ValueError, match="multiple of the 2 families"):
        make_family_vec(ENV_ID, 3, 0, specs, "train")
    with pytest.raises(ValueError, match="no main-track scenario"):
        family_specs(ENV_ID, ["nothing/*"])


class _Constant:
    def __init__(self, action):
        self.action = np.asarray(action, np.int64)

    def __call__(self, obs, masks):
        return np.tile(self.action, (obs.shape[0], 1))


def _greedy_match(model, vec, teacher, steps):
    obs, hits = vec.reset(), 0
    for _ in range(steps):
        mask = vec.action_masks()
        a, _ = model.predict(obs, action_masks=mask, deterministic=True)
        hits += int(np.all(a == teacher(obs, mask), axis=1).sum())
        obs, *_ = vec.step(a)
    return hits / (steps * vec.num_envs)


def test_dagger_multidiscrete_reproduces_a_constant_teacher():
    """Trivial case: the teacher always names 1 prefill, 1 decode, 1 colocated instance and the
    overflow rule; the keep-role prior (keep_logit 5, StickyRolePolicy) starts the student at
    all-colocated, and DAgger must override it."""
    vec = DisaggregationVecEnv(4, seed=0, **TINY)
    model = make_model("maskable-ppo", ENV_ID, vec, 0, None)
    teacher = _Constant([P, D, C, K.RULE_OVERFLOW])
    assert _greedy_match(model, vec, teacher, 8) == 0.0
    history = imitate(model, vec, 4 * 8 * 4, rounds=4, epochs=20, batch_size=64, learning_rate=3e-3,
                      seed=0, log=lambda _: None, teacher=teacher)
    assert history[-1]["loss"] < 0.1 * history[0]["loss"], history
    assert _greedy_match(model, vec, teacher, 16) == 1.0


def test_teacher_plans_every_training_episode_and_the_student_follows_it(tmp_path):
    fam = FamilyVecEnv([DisaggregationVecEnv(2, seed=0, **TINY),
                        DisaggregationVecEnv(2, seed=2, **{**TINY, "load": 1.2, "slo_ttft_s": 0.5})],
                       ["a", "b"])
    data = T.compute([p.config for p in fam.parts], procs=1, names=fam.names, log=lambda _: None)
    episodes = [(p.config, ep) for p in fam.parts for ep in T.training_episodes(p.config)]
    assert len(data.plans) == len(episodes) == 4
    R = TINY["instances"]
    setting = {id(p.config): (round(p.params.ttft_headroom, 9), round(p.params.tpot_headroom, 9)) for p in fam.parts}
    assert len(set(setting.values())) == 2 and set(data.starts) == set(setting.values())  # the SLOs differ
    for cfg, ep in episodes:
        plan = data.plan_of(cfg, ep)
        assert plan.shape == (cfg.decisions, R)
        np.testing.assert_array_equal(plan[0], data.starts[setting[id(cfg)]])  # the setting's start
    # A setting's start is the candidate with the best mean share of each of its episodes' best.
    cands = H.candidate_plans(R)
    for p in fam.parts:
        shares = []
        for ep in T.training_episodes(p.config):
            _, m = H.replay(p.config, [ep], cands)
            g = np.array([x["goodput_per_gpu"] for x in m])
            shares.append(g / g.max())
        assert np.array_equal(cands[int(np.argmax(np.mean(shares, axis=0)))], data.starts[setting[id(p.config)]])
    # One plan per load level: the start, then (if it beat staying on the level's mean) one move.
    by_load = {}
    for cfg, ep in episodes:
        by_load.setdefault(ep["load"], set()).add(data.plan_of(cfg, ep).tobytes())
    assert all(len(v) == 1 for v in by_load.values())
    for s in data.stats:
        assert s["plan_role_changes"] <= TINY["instances"]  # one move: at most every instance once
    T.save(data, tmp_path / "t.pkl")
    teacher = T.teacher_for(fam, tmp_path / "t.pkl")
    obs = fam.reset()
    a = teacher(obs, fam.action_masks())
    first = np.array([data.starts[setting[id(fam.config_of(e))]] for e in range(4)])
    assert a.shape == (4, R + 1) and np.all(a[:, :R] == first) and np.all(a[:, R] == K.RULE_BALANCE)
    model = make_model("maskable-ppo", ENV_ID, fam, 0, None)
    imitate(model, fam, 4 * 8 * 4, rounds=4, epochs=20, batch_size=64, learning_rate=3e-3, seed=0,
            log=lambda _: None, teacher=teacher)
    assert _greedy_match(model, fam, teacher, 16) >= 0.9


def test_teacher_data_errors_name_the_file_and_the_episode(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="bad.pkl"):
        T.load(bad)
    vec = DisaggregationVecEnv(1, seed=0, **TINY)
    data = T.TeacherData(starts={(0.0, 0.0): np.array([P, C, D])}, plans={})
    T.save(data, tmp_path / "empty.pkl")
    with pytest.raises(ValueError, match="empty.pkl.*no plan for window 0"):
        T.teacher_for(vec, tmp_path / "empty.pkl")


def test_train_cli_scenarios_and_imitation(tmp_path):
    """train.py --scenarios (two leaderboard families, tiny episodes) --imitate with --teacher-data
    written by python -m agents.disaggregation_teacher; the run record names the families."""
    from agents import train
    from agents.disaggregation_teacher import main as teacher_main

    tiny = ["phases=1", "phase_s=20.0", "episodes_per_load=1", "instances=2", "drain_s=20.0"]
    glob = "disaggregation/*llama3.1-8b*"
    assert teacher_main(["--scenarios", glob, "--env-kwargs", *tiny, "--out", str(tmp_path / "t.pkl")]) == 0
    rc = train.main(["--env", ENV_ID, "--scenarios", glob, "--env-kwargs", *tiny, "--imitate", "48",
                     "--timesteps", "0", "--n-envs", "2", "--no-eval", "--no-progress", "--imitate-kwargs", "epochs=2",
                     "batch_size=16", "--teacher-data",
                     str(tmp_path / "t.pkl"), "--out", str(tmp_path / "run")])
    assert rc == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s["name"] for s in run["scenarios"]] == [s.name for s in family_specs(ENV_ID, [glob])]
    assert len(run["imitation"]) == 6 and run["imitate_kwargs"] == {"epochs": 2, "batch_size": 16}
    for bad in ("epoch=2", "epochs=0", "learning_rate='x'"):
        with pytest.raises(SystemExit):
            train.main(["--env", ENV_ID, "--imitate", "48", "--timesteps", "0", "--imitate-kwargs", bad,
                        "--out", str(tmp_path / "x")])
    assert (tmp_path / "run" / "final.zip").exists()
    with pytest.raises(SystemExit):
        train.main(["--env", ENV_ID, "--scenarios", "nothing/*", "--imitate", "48", "--timesteps", "0",
                    "--out", str(tmp_path / "x")])


def test_envs_make_vec_is_what_family_parts_are():
    specs = family_specs(ENV_ID, ["disaggregation/*70b*mlperf/*"], {"phases": 1, "phase_s": 20.0})
    fam = make_family_vec(ENV_ID, 2, 3, specs, "train")
    ref = envs.make_vec(ENV_ID, 2, seed=3, trace=specs[0].trace, split="train", **specs[0].env_kwargs)
    np.testing.assert_array_equal(fam.reset(), ref.reset())
    assert fam.config_of(0) == ref.config


def test_family_vec_with_worker_parts_is_the_same_batch():
    """--vec-procs with --scenarios: each family's part in a worker process steps as in this process,
    and the teacher's questions (config_of, episode_of) are answered by the workers."""
    specs = family_specs(ENV_ID, ["disaggregation/*8b*"], {"phases": 1, "phase_s": 20.0, "episodes_per_load": 3})
    one = make_family_vec(ENV_ID, 4, 1, specs, "train")
    sub = make_family_vec(ENV_ID, 4, 1, specs, "train", vec_procs=4)
    try:
        assert [type(p).__name__ for p in sub.parts] == ["SubprocNativeVecEnv"] * 2
        np.testing.assert_array_equal(one.reset(), sub.reset())
        a = np.tile(np.append(H.roles_pd(8, 4, 4), 0), (4, 1))
        for _ in range(5):
            r1, r2 = one.step(a), sub.step(a)
            for x, y in zip(r1[:3], r2[:3]):
                np.testing.assert_array_equal(x, y)
            assert [one.episode_of(e) for e in range(4)] == [sub.episode_of(e) for e in range(4)]
        assert [one.config_of(e) for e in range(4)] == [sub.config_of(e) for e in range(4)]
    finally:
        sub.close()


def test_value_to_go_is_the_dp_value_and_the_teacher_weighs_switching_off_the_plan():
    rng = np.random.default_rng(4)
    v = rng.normal(size=(3, 5))
    cost = rng.uniform(0, 1, size=(3, 3))
    np.fill_diagonal(cost, 0)
    W = T.value_to_go(v, cost)
    for t in range(5):  # W[k, t] = the best path value from t on that starts at k
        for k in range(3):
            best = max(_path_value(v[:, t:], cost, (k, *p)) for p in itertools.product(range(3), repeat=4 - t))
            assert W[k, t] == pytest.approx(best)
    # decide(): R = 3, candidates of candidate_plans(3); a plan that starts at the start and moves at t = 1.
    cands = np.array(H.candidate_plans(3))
    Kn, Tn = len(cands), 4
    start, other = cands[0], cands[3]
    plan = np.array([start, other, other, other])
    to_go = np.zeros((Kn, Tn))
    to_go[3] = 10.0  # being at `other` is worth 10 from any decision, every other candidate 0
    key = ("cfg", 0, 0.5)
    data = T.TeacherData(starts={(0.0, 0.0): start}, plans={key: plan}, to_go={key: to_go}, unit={key: 1.0})
    teacher = T.DisaggregationTeacher(None, data)
    assert np.array_equal(teacher.decide(key, plan, 0, cands[5]), start)  # t = 0: the common start
    assert np.array_equal(teacher.decide(key, plan, 1, start), other)  # on the plan: its next row
    assert np.array_equal(teacher.decide(key, plan, 2, other), other)
    off = cands[1]  # off the plan: move to the plan's row if 10 beats the changed instances x unit
    assert np.array_equal(teacher.decide(key, plan, 2, off), other)
    data.unit[key] = 100.0  # switching costs more than it brings: stay
    assert np.array_equal(teacher.decide(key, plan, 2, off), off)
    cannot_serve = np.array([P, P, P])  # no candidate has these counts: always move
    assert np.array_equal(teacher.decide(key, plan, 2, cannot_serve), other)


def test_teacher_data_without_a_key_is_a_value_error_naming_it(tmp_path):
    import pickle

    f = tmp_path / "partial.pkl"
    f.write_bytes(pickle.dumps({"format": T.FORMAT, "starts": {}}))
    with pytest.raises(ValueError, match=r"partial.pkl: .*\['plans', 'stats', 'to_go', 'unit'\]"):
        T.load(f)


def test_teacher_cli_bad_config_is_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        T.main(["--scenarios", "disaggregation/*8b*", "--env-kwargs", "instances=1", "--out", str(tmp_path / "t.pkl")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--env-kwargs" in err and "instances must be >= 2" in err
    assert not (tmp_path / "t.pkl").exists()
