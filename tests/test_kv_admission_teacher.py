"""KVAdmission-v0's imitation teacher (agents.kv_admission_teacher): the per-episode best heuristic
in hindsight, its replays, its labels, and DAgger / train.py --imitate with it (tiny trace; fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import kv_admission_teacher as T
from agents.imitation import TEACHERS, imitate, teacher_for
from agents.policy import heuristic_names, make_policy
from agents.training import make_model
from conftest import make_trace
from envs.kv_admission import env as kva

ENV = kva.ENV_ID
# 4 windows of 48 requests (2 in the training split) with long prompts and mixed outputs on a
# small KV pool, so that the heuristics' choices differ per episode.
TRACE = make_trace(192, rate=30.0, prompt=np.arange(192) * 997 % 3000 + 200,
                   output=np.arange(192) * 53 % 400 + 2, seed=7)
TINY = dict(trace=TRACE, window_requests=48, load=(1.1, 1.5), capacity_blocks=1500, drain_s=30.0)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch as th

    n = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    return T.compute([kva.KVAdmissionVecEnv(1, **TINY).config], log=lambda *_: None)


def _play(cfg, heuristic: str, episode: dict) -> float:
    """SLO attainment of ``heuristic`` on one episode in a fresh batch of one."""
    vec = kva.KVAdmissionVecEnv(1, config=cfg, seed=123)
    vec.set_options([episode])
    obs = vec.reset()
    pol = make_policy(heuristic, vec, ENV)
    while True:
        obs, _, done, infos = vec.step(pol.act(obs, vec.action_masks()))
        if done[0]:
            return infos[0]["metrics"]["slo_attainment"]


def test_episode_of_names_the_episode_a_reset_replays():
    vec = kva.KVAdmissionVecEnv(3, seed=4, **TINY)
    obs = vec.reset()
    episodes = [vec.episode_of(e) for e in range(3)]
    again = kva.KVAdmissionVecEnv(3, seed=99, **TINY)
    again.set_options(episodes)
    assert np.array_equal(again.reset(), obs)
    assert [again.episode_of(e) for e in range(3)] == episodes
    with pytest.raises(IndexError, match="env 3"):
        vec.episode_of(3)


def test_replays_cover_every_episode_and_match_a_single_env(data):
    cfg = kva.KVAdmissionVecEnv(1, **TINY).config
    episodes = T.training_episodes(cfg)
    assert len(data.scores) == len(episodes) == 2 * 2  # 2 training windows x 2 loads
    assert data.heuristics == tuple(heuristic_names(ENV))
    for ep in episodes[:3]:
        key = T.episode_key(cfg, ep)
        for i, h in enumerate(data.heuristics):
            assert data.scores[key][i] == _play(cfg, h, ep), (ep, h)
    # The heuristics disagree on this trace: more than one wins some episode, and the per-episode best
    # beats the best fixed heuristic on average.
    s = np.array(list(data.scores.values()))
    assert len(set(s.argmax(axis=1))) > 1
    assert s.max(axis=1).mean() > s.mean(axis=0).max()


def test_teacher_labels_are_the_episode_winners_actions(data):
    vec = kva.KVAdmissionVecEnv(4, seed=1, **TINY)
    teacher = T.KVAdmissionTeacher(vec, data)
    pols = {h: make_policy(h, vec, ENV) for h in data.heuristics}
    obs = vec.reset()
    seen = set()
    for _ in range(200):
        mask = vec.action_masks()
        got = teacher(obs, mask)
        for e in range(4):
            key = T.episode_key(vec.config, vec.episode_of(e))
            best = data.heuristics[int(np.argmax(data.scores[key]))]
            seen.add(best)
            assert got[e] == pols[best].act(obs[e:e + 1], mask[e:e + 1])[0]
        assert mask[np.arange(4), got].all()
        obs, *_ = vec.step(got)
    assert seen  # every env's episode had a winner


def test_ties_go_to_the_first_heuristic_and_unknown_episodes_raise():
    d = T.TeacherData(("a", "b", "c"), scores={("k", 0, 1.1): np.array([0.5, 0.7, 0.7])}, labels={"k": "cfg"})
    assert d.best(("k", 0, 1.1)) == 1
    with pytest.raises(KeyError, match="window 3 at load 1.1 of config cfg"):
        d.best(("k", 3, 1.1))


def test_compute_is_deterministic_and_save_load_round_trips(data, tmp_path):
    again = T.compute([kva.KVAdmissionVecEnv(1, **TINY).config], log=lambda *_: None)
    assert data.scores.keys() == again.scores.keys()
    assert all(np.array_equal(data.scores[k], again.scores[k]) for k in data.scores)
    path = tmp_path / "t.pkl"
    T.save(data, path)
    back = T.load(path)
    assert back.heuristics == data.heuristics and back.labels == data.labels
    assert all(np.array_equal(back.scores[k], data.scores[k]) for k in data.scores)
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="bad.pkl"):
        T.load(tmp_path / "bad.pkl")


def test_teacher_data_for_another_config_is_refused(data, tmp_path):
    path = tmp_path / "t.pkl"
    T.save(data, path)
    vec = kva.KVAdmissionVecEnv(2, seed=0, **{**TINY, "slo_metric": "p99_tbt"})
    with pytest.raises(ValueError, match="no replays of config"):
        T.teacher_for(vec, path)


def test_dagger_with_the_teacher_is_registered_and_learns(data, tmp_path):
    assert ENV in TEACHERS
    vec = kva.KVAdmissionVecEnv(4, seed=2, **TINY)
    path = tmp_path / "t.pkl"
    T.save(data, path)
    teacher = teacher_for(ENV, vec, path)
    assert isinstance(teacher, T.KVAdmissionTeacher)
    model = make_model("maskable-ppo", ENV, vec, 0, None, {}, "cpu")
    # 4 rounds since the capacity (the load unit) of this 192-request trace is measured on its requests repeated
    # (4.21 requests/s; 4.10 on them once): agreement per round 0 / 0.43 / 0.47 / 0.65 (was 0 / 0.45 / 0.67 in 3)
    kw = dict(rounds=4, epochs=10, batch_size=256, seed=0, log=lambda *_: None)
    hist = imitate(model, vec, 4 * 4 * 150, teacher=teacher, **kw)
    assert hist[-1]["student_agrees"] > hist[0]["student_agrees"]
    assert hist[-1]["student_agrees"] > 0.6
    vec2 = kva.KVAdmissionVecEnv(4, seed=2, **TINY)
    again = make_model("maskable-ppo", ENV, vec2, 0, None, {}, "cpu")
    hist2 = imitate(again, vec2, 4 * 4 * 150, teacher=teacher_for(ENV, vec2, path), **kw)
    assert json.dumps(hist) == json.dumps(hist2)  # same seed, same run


def test_zoo_recipe_and_script_train_on_the_transfer_distribution():
    from pathlib import Path

    from agents import scenarios as scn
    from agents.zoo import KV_ADMISSION_TRANSFER, KV_ADMISSION_WORKLOADS

    root = Path(__file__).resolve().parents[1]
    resolved = tuple(str((root / w).resolve()) if "/" in w else w for w in KV_ADMISSION_WORKLOADS)
    assert resolved == scn.TRAINING_WORKLOADS[ENV]
    args = KV_ADMISSION_TRANSFER.train_args
    assert KV_ADMISSION_TRANSFER.on_distribution and "--imitate" in args and "--trace" not in args
    # the device run (agents/zoo/train_kv_admission.sh -> python -m agents.zoo seeds kv_admission): the
    # teacher and every seed on the recipe's mixture, the seeds with the recipe's budget
    from agents.zoo.seeds import Settings, option_values, plan

    p = plan("kv_admission", Settings(Path("/o"), Path("/w"), 4))
    mixture = "workloads=" + ",".join(resolved)
    assert option_values(list(p.teacher.argv), "--env-kwargs") == [mixture]
    assert option_values(list(p.teacher.argv), "--candidates") == ["transfer"]
    for c in p.seeds:
        assert option_values(list(c.argv), "--env-kwargs") == [mixture]
        assert option_values(list(c.argv), "--imitate") == [args[args.index("--imitate") + 1]]


def test_static_candidates_are_the_schedules_they_name():
    names = T.candidate_names("static")
    assert names[:5] == tuple(heuristic_names(ENV)) and len(names) == 5 + 16
    cut = T.candidate_names("transfer")  # the heuristics, then the statics that win episodes, in the same order
    assert cut[:5] == names[:5] and 5 < len(cut) < len(names)
    assert [n for n in names if n in cut] == list(cut)
    assert "static_b8192_fcfs_preempt" not in names  # vllm_fcfs
    vec = kva.KVAdmissionVecEnv(2, seed=0, **TINY)
    obs = vec.reset()
    a = T.make_candidate("static_b2048_sjf_defer", vec).act(obs, vec.action_masks())
    admit, budget, defer, order = kva.decode_action(int(a[0]))
    assert (kva.BUDGET_LEVELS[budget], defer, order) == (2048, True, 1)
    with pytest.raises(ValueError, match="static_b999"):
        T.make_candidate("static_b999_sjf_defer", vec)
    with pytest.raises(ValueError, match="'best'"):
        T.candidate_names("best")
    d = T.compute([vec.config], heuristics=("sarathi", "static_b512_edf_preempt"), log=lambda *_: None)
    assert d.heuristics == ("sarathi", "static_b512_edf_preempt") and len(d.scores) == 4


def test_chunked_and_sharded_replays_equal_the_whole(data, tmp_path):
    cfg = kva.KVAdmissionVecEnv(1, **TINY).config
    ranges = T.episode_jobs(cfg, 99)
    assert sorted(ranges) == [(k, k + 1) for k in range(4)]  # one per episode, each within a load
    assert sorted(T.episode_jobs(cfg, 1)) == [(0, 2), (2, 4)]  # one per load
    chunked = T.compute([cfg], split=99, log=lambda *_: None)
    shards = [T.compute([cfg], split=99, shard=(i, 3), log=lambda *_: None) for i in range(3)]
    for i, d in enumerate(shards):
        T.save(d, tmp_path / f"s{i}.pkl")
    with pytest.raises(ValueError, match="shard"):
        T.load(tmp_path / "s0.pkl")  # a lone shard is incomplete
    with pytest.raises(ValueError, match="lack replays"):
        T.merge(shards[:2])
    merged = T.merge([T.load(tmp_path / f"s{i}.pkl", complete=False) for i in range(3)])
    for d in (chunked, merged):
        assert d.scores.keys() == data.scores.keys()
        for k in data.scores:
            assert np.array_equal(d.scores[k], data.scores[k]) and np.array_equal(d.returns[k], data.returns[k])
    with pytest.raises(ValueError, match="shard 3/3"):
        T.compute([cfg], split=99, shard=(3, 3))


def test_slo_tier_specs_cross_one_config_with_the_tiers():
    from agents.family_vec import slo_tier_specs

    specs = slo_tier_specs("default", ["mlperf_server", "mlperf_interactive:0.9,1.3", "distserve_chatbot_p99tbt"],
                           {"load": (1.1, 1.5), "window_requests": 256})
    assert [s.name for s in specs] == ["mlperf_server", "mlperf_interactive:0.9,1.3", "distserve_chatbot_p99tbt"]
    kw = [s.env_kwargs for s in specs]
    # envs/data/slo.toml: MLPerf Server 2 s / 100 ms, MLPerf interactive 0.5 s / 30 ms, DistServe chatbot 0.25 s / 0.1 s
    assert (kw[0]["slo_ttft_s"], kw[0]["slo_tpot_s"], kw[0]["slo_metric"], kw[0]["load"]) == (2.0, 0.1, "tpot", (1.1, 1.5))
    assert (kw[1]["slo_ttft_s"], kw[1]["slo_tpot_s"], kw[1]["load"]) == (0.5, 0.03, (0.9, 1.3))
    assert (kw[2]["slo_ttft_s"], kw[2]["slo_tpot_s"], kw[2]["slo_metric"]) == (0.25, 0.1, "p99_tbt")
    assert all(k["window_requests"] == 256 for k in kw)
    for tiers, over, msg in ((["nope"], {}, "nope"), (["mlperf_server:x"], {}, "numbers"),
                             (["mlperf_server:0"], {}, "> 0"), (["mlperf_server", "mlperf_server:1.1"], {}, "twice"),
                             (["mlperf_server"], {"slo_tpot_s": 0.1}, "slo_tpot_s"), ([], {}, "no tier"),
                             # an empty load list after ':' and a non-finite load are refused, not ignored
                             (["mlperf_server:"], {}, "numbers"), (["mlperf_server:inf"], {}, "finite"),
                             (["mlperf_server:nan"], {}, "finite")):
        with pytest.raises(ValueError, match=msg):
            slo_tier_specs("default", tiers, over)


def test_teacher_over_slo_tiers_labels_each_family_by_its_own_config(tmp_path):
    from agents.family_vec import make_family_vec, slo_tier_specs

    over = {k: v for k, v in TINY.items() if k != "trace"}
    specs = slo_tier_specs(TRACE, ["mlperf_server", "mlperf_interactive:1.3"], over)
    configs = [kva.KVAdmissionVecEnv(1, **{**s.env_kwargs, "trace": s.trace}).config for s in specs]
    data = T.compute(configs, log=lambda *_: None)
    assert len(data.labels) == 2 and len(data.scores) == 2 * 2 + 2  # 2 training windows x (2 loads, 1 load)
    assert data.summary()[0]["mean"] != data.summary()[1]["mean"]  # each family is scored under its own SLO
    split = T.compute(configs, split=3, log=lambda *_: None)  # jobs over both configs, costliest first
    assert all(np.array_equal(split.scores[k], data.scores[k]) for k in data.scores)
    vec = make_family_vec(ENV, 4, 0, specs, "train")
    path = tmp_path / "t.pkl"
    T.save(data, path)
    teacher = T.teacher_for(vec, path)
    vec.reset()
    wins = teacher.winners()
    for e, (cfg, h) in enumerate(wins):
        assert cfg == vec.config_of(e) and h == data.best(T.episode_key(cfg, vec.episode_of(e)))
    assert {c.slo_ttft_s for c, _ in wins} == {2.0, 0.5}
    assert teacher(vec.reset(), vec.action_masks()).shape == (4,)


def test_script_tiers_mode_names_valid_tiers():
    from pathlib import Path

    from agents.family_vec import slo_tier_specs

    from agents.zoo.seeds import SEED_RUNS, Settings, option_values, plan

    tiers = list(SEED_RUNS["kv_admission"].tiers)  # the tiers mode of agents/zoo/train_kv_admission.sh
    specs = slo_tier_specs("default", tiers, {})
    assert specs[0].env_kwargs["slo_ttft_s"] == 2.0 and "load" not in specs[0].env_kwargs  # full's loads
    assert len({(s.env_kwargs["slo_ttft_s"], s.env_kwargs["slo_tpot_s"]) for s in specs}) == len(specs) == 3
    assert all(s.env_kwargs["slo_metric"] == "tpot" for s in specs)  # the observation cannot tell p99_tbt apart
    p = plan("kv_admission", Settings(Path("/o"), Path("/w"), 4, "tiers"))
    assert option_values(list(p.teacher.argv), "--slo-tiers") == tiers  # the teacher and the seeds alike
    assert all(option_values(list(c.argv), "--slo-tiers") == tiers for c in p.seeds)


@pytest.mark.parametrize("raw", [b"garbage\n", b"", b"\x80\x04\x95", b"(lp0\nI1\n"])
def test_load_of_a_non_teacher_file_names_the_file(tmp_path, raw):
    # b"garbage\n" is read by the unpickler as opcode 'g' and fails in int(): it must still name the file
    path = tmp_path / "junk.pkl"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="junk.pkl"):
        T.load(path)


@pytest.mark.parametrize("args, what", [(["bogus"], "mode 'bogus'"), (["small", "nope"], "stage 'nope'")])
def test_script_refuses_a_bad_mode_or_stage_before_creating_anything(tmp_path, args, what):
    import subprocess
    from pathlib import Path

    import os

    script = Path(__file__).resolve().parents[1] / "agents" / "zoo" / "train_kv_admission.sh"
    env = {"PATH": os.environ["PATH"], "OUT": str(tmp_path / "out"), "W": str(tmp_path / "w")}
    r = subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and what in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


@pytest.mark.parametrize("argv, msg", [
    # PrefixEviction has no SLO fields: the error blamed --env-kwargs the user had not given
    (["--env", "PrefixEviction", "--timesteps", "64", "--slo-tiers", "mlperf_server"],
     "--slo-tiers: servegym/PrefixEviction-v0 has no SLO"),
    # an unknown tier names the flag and the entry
    (["--env", "KVAdmission", "--imitate", "4096", "--timesteps", "0", "--slo-tiers", "bogus:1.1"],
     "--slo-tiers bogus:1.1: "),
])
def test_train_slo_tiers_errors_name_the_flag(tmp_path, capsys, argv, msg):
    from agents.train import main

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and msg in err[-1]


def test_merge_refuses_flags_it_would_ignore(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        T.main(["--merge", str(tmp_path / "a.pkl"), "--slo-tiers", "bogus", "--shard", "0/2",
                "--out", str(tmp_path / "m.pkl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "--merge: not with --slo-tiers, --shard" in err[-1]


def test_merge_takes_the_union_of_configs_and_refuses_disagreeing_replays():
    key_a, key_b = ("ka", 0, 1.1), ("kb", 0, 1.1)
    a = T.TeacherData(("x", "y"), scores={key_a: np.array([0.5, 0.6])}, returns={key_a: np.array([1.0, 2.0])},
                      labels={"ka": "cfg a"})
    b = T.TeacherData(("x", "y"), scores={key_b: np.array([0.7, 0.1])}, returns={key_b: np.array([3.0, 4.0])},
                      labels={"kb": "cfg b"})
    u = T.merge([a, b])
    assert set(u.scores) == {key_a, key_b} and u.best(key_b) == 0
    assert T.merge([a, a]).scores[key_a].tolist() == [0.5, 0.6]  # the same replay twice agrees
    c = T.TeacherData(("x", "y"), scores={key_a: np.array([0.5, 0.9])}, returns={key_a: np.array([1.0, 2.0])},
                      labels={"ka": "cfg a"})
    with pytest.raises(ValueError, match="two files disagree on y's replay of window 0 at load 1.1 of cfg a"):
        T.merge([a, c])
