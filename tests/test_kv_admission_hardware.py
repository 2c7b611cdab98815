"""KVAdmission-v0 on a hardware distribution (issue 21): seeded draws of GPU x model x KV capacity, one
native batch per drawn engine joined as one VecEnv, the draw in the run record."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hwmodels
from agents import scenarios as scn
from agents.family_vec import hardware_specs, make_family_vec
from envs.kv_admission.env import ENV_ID, KVAdmissionVecEnv
from envs.kv_admission.hardware import DISTRIBUTIONS, draw_hardware, hardware_record, parse_hardware

SMALL = {"window_requests": 64, "load": 1.3}


def test_draw_is_seeded_distinct_and_sized_from_the_catalogue():
    a = draw_hardware("nvidia-v1", 4, 0)
    assert a == draw_hardware("nvidia-v1", 4, 0)  # same seed, same engines in the same order
    assert draw_hardware("nvidia-v1", 2, 0) == a[:2]  # a smaller draw is a prefix
    assert [d.name for d in draw_hardware("nvidia-v1", 4, 1)] != [d.name for d in a]
    every = draw_hardware("nvidia-v1", len(DISTRIBUTIONS["nvidia-v1"].combos()), 5)
    assert len({d.name for d in every}) == len(every) == 12  # without replacement: every pair once
    for d in every:
        pool = hwmodels.kv_capacity_blocks(d.model, d.gpu, d.tp, 0.9, 16)
        assert d.capacity_blocks == round(d.capacity_frac * pool) and d.capacity_blocks >= 1
    d = every[0]  # the engine a batch builds is the drawn one
    eng = KVAdmissionVecEnv(1, window_requests=64, **d.env_kwargs()).scenario.engine
    assert eng.capacity_blocks == d.capacity_blocks
    rec = hardware_record("nvidia-v1:2:0")
    assert rec == {"distribution": "nvidia-v1", "draws": 2, "seed": 0, "engines": [d.info() for d in a[:2]]}


@pytest.mark.parametrize("spec, msg", [
    ("nope-v1", "unknown distribution 'nope-v1'"),
    ("nvidia-v1:x", "DRAWS and SEED must be integers"),
    ("nvidia-v1:0", r"DRAWS must be in 1\.\.12"),
    ("nvidia-v1:13", r"DRAWS must be in 1\.\.12"),
    ("nvidia-v1:2:-1", "SEED must be >= 0"),
    ("nvidia-v1:2:0:1", r"expected NAME\[:DRAWS\[:SEED\]\]"),
])
def test_bad_hardware_specs_get_one_line_errors(spec, msg):
    with pytest.raises(ValueError, match=msg) as err:
        parse_hardware(spec)
    assert "\n" not in str(err.value) and spec in str(err.value)


def test_hardware_specs_refuse_engine_fields_in_env_kwargs():
    with pytest.raises(ValueError, match="drop gpu, capacity_blocks from --env-kwargs"):
        hardware_specs("default", "nvidia-v1:2", {"gpu": "H200", "capacity_blocks": 100})
    specs = hardware_specs("default", "nvidia-v1:2:0", {"load": 1.3})
    assert [s.name for s in specs] == [d.name for d in draw_hardware("nvidia-v1", 2, 0)]
    assert all(s.env_kwargs["load"] == 1.3 and s.trace == "default" for s in specs)


def test_held_out_hardware_is_in_no_training_distribution():
    """The leaderboard's hardware rows hold out a GPU or a model that no distribution contains."""
    for dist in DISTRIBUTIONS.values():
        models = {m for m, _, _ in dist.engines}
        gpus = {hwmodels.get_gpu(g).name for _, g, _ in dist.engines}
        for _, model, gpu, _ in scn.KV_HELD_OUT_HARDWARE:
            assert model not in models or hwmodels.get_gpu(gpu).name not in gpus, (dist.name, model, gpu)
            assert (model, hwmodels.get_gpu(gpu).name) not in {(m, hwmodels.get_gpu(g).name) for m, g, _ in dist.engines}


def test_each_engine_of_the_batch_plays_the_standalone_env_of_that_engine():
    """The joined batch's envs give the same observations, rewards, ends and masks, step for step, as a
    standalone KVAdmissionVecEnv built with the drawn engine and the same seed (the part's envs lo..hi-1
    seeded from seed + lo, as one batch), under the same random masked actions."""
    specs = hardware_specs("default", "nvidia-v1:2:0", SMALL)
    vec = make_family_vec(ENV_ID, 4, 3, specs, "train")
    alone = [KVAdmissionVecEnv(2, seed=3 + lo, trace="default", split="train", **s.env_kwargs)
             for s, (lo, _) in zip(specs, vec.slices)]
    caps = [a.scenario.engine.capacity_blocks for a in alone]
    assert caps[0] != caps[1] and [p.scenario.engine.capacity_blocks for p in vec.parts] == caps
    assert vec.config_of(0).model != vec.config_of(2).model
    obs = vec.reset()
    obs_alone = np.concatenate([a.reset() for a in alone])
    assert np.array_equal(obs, obs_alone)
    rng = np.random.default_rng(0)
    ended = np.zeros(4, bool)
    for _ in range(20_000):
        masks = vec.action_masks()
        assert np.array_equal(masks, np.concatenate([a.action_masks() for a in alone]))
        act = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs, rew, done, infos = vec.step(act)
        got = [a.step(act[lo:hi]) for a, (lo, hi) in zip(alone, vec.slices)]
        assert np.array_equal(obs, np.concatenate([g[0] for g in got]))
        assert np.array_equal(rew, np.concatenate([g[1] for g in got]))
        assert np.array_equal(done, np.concatenate([g[2] for g in got]))
        ended |= done
        for e in np.flatnonzero(done):
            k, i = vec.part_of(int(e))
            assert infos[e]["metrics"] == got[k][3][i]["metrics"]
        assert [vec.episode_of(e) for e in range(4)] == [a.episode_of(i) for a in alone for i in range(2)]
        if ended.all():
            break
    assert ended.all()  # every env's episode ended and reset inside the run


def test_train_records_the_hardware_draw(tmp_path):
    from agents import train

    rc = train.main(["--hardware", "nvidia-v1:2:0", "--env-kwargs", "window_requests=64", "load=1.3",
                     "--timesteps", "64", "--n-envs", "2", "--hyperparams", "n_steps=32", "batch_size=32",
                     "--no-eval", "--no-progress", "--out", str(tmp_path)])
    assert rc == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["hardware"] == hardware_record("nvidia-v1:2:0")
    assert [s["name"] for s in run["scenarios"]] == [e["name"] for e in run["hardware"]["engines"]]
    assert run["scenarios"][1]["env_kwargs"]["capacity_blocks"] == run["hardware"]["engines"][1]["capacity_blocks"]


def test_train_refuses_hardware_with_other_families_or_environments(capsys, tmp_path):
    from agents import train

    for argv, msg in (
        (["--hardware", "nvidia-v1:2", "--slo-tiers", "mlperf_server"], "--hardware: not with --scenarios, --slo-tiers"),
        (["--env", "Routing-v0", "--hardware", "nvidia-v1:2"], "Routing-v0 has no hardware distributions"),
        (["--hardware", "nvidia-v1:2", "--env-kwargs", "gpu=H200"], "drop gpu from --env-kwargs"),
        (["--hardware", "nvidia-v1:99"], r"--hardware nvidia-v1:99: DRAWS must be in 1..12"),
    ):
        with pytest.raises(SystemExit) as err:
            train.main([*argv, "--timesteps", "64", "--out", str(tmp_path / "x")])
        assert err.value.code == 2
        line = capsys.readouterr().err.strip()
        assert "\n" not in line and msg.replace("\\", "") in line.replace("\\", ""), line


def test_teacher_over_hardware_labels_each_engine_by_its_own_config(tmp_path):
    """The teacher's replays are keyed by config, engine fields included: each drawn engine's envs are
    labelled by the winners on that engine (agents.kv_admission_teacher over the joined batch)."""
    from conftest import make_trace

    from agents import kv_admission_teacher as T

    trace = make_trace(192, rate=30.0, prompt=np.arange(192) * 997 % 3000 + 200,
                       output=np.arange(192) * 53 % 400 + 2, seed=7)
    specs = hardware_specs(trace, "nvidia-v1:2:0", {"window_requests": 48, "load": (1.1, 1.5), "drain_s": 30.0})
    configs = [KVAdmissionVecEnv(1, **{**s.env_kwargs, "trace": s.trace}).config for s in specs]
    data = T.compute(configs, heuristics=("vllm_fcfs", "sarathi", "sjf"), log=lambda *_: None)
    assert len(data.labels) == 2 and len(data.scores) == 2 * 2 * 2  # 2 engines x 2 training windows x 2 loads
    # the log and summary name each engine (the default engine's label is unchanged)
    assert [lab.split(" engine=")[1] for lab in data.labels.values()] == [
        f"{s.env_kwargs['model']}/{s.env_kwargs['gpu']}/tp{s.env_kwargs['tp']}/kv={s.env_kwargs['capacity_blocks']}"
        for s in specs]
    assert "engine=" not in T.config_label(KVAdmissionVecEnv(1, trace=trace, window_requests=48).config)
    path = tmp_path / "t.pkl"
    T.save(data, path)
    vec = make_family_vec(ENV_ID, 4, 0, specs, "train")
    teacher = T.teacher_for(vec, path)
    vec.reset()
    wins = teacher.winners()
    for e, (cfg, h) in enumerate(wins):
        assert cfg == vec.config_of(e) and h == data.best(T.episode_key(cfg, vec.episode_of(e)))
    assert len({(c.model, c.gpu, c.capacity_blocks) for c, _ in wins}) == 2
    assert teacher(vec.reset(), vec.action_masks()).shape == (4,)
    # a file of the single default engine has no replays of these engines
    one = [KVAdmissionVecEnv(1, **{**specs[0].env_kwargs, "trace": trace, "model": "Llama-3.1-8B", "gpu": "H100",
                                   "tp": 1, "capacity_blocks": None}).config]
    T.save(T.compute(one, heuristics=("vllm_fcfs",), log=lambda *_: None), tmp_path / "one.pkl")
    with pytest.raises(ValueError, match="no replays of config"):
        T.teacher_for(vec, tmp_path / "one.pkl")


def test_teacher_command_refuses_hardware_with_tiers(tmp_path, capsys):
    from agents import kv_admission_teacher as T

    with pytest.raises(SystemExit):
        T.main(["--hardware", "nvidia-v1:2", "--slo-tiers", "mlperf_server", "--out", str(tmp_path / "t.pkl")])
    assert "--hardware: not with --scenarios or --slo-tiers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        T.main(["--hardware", "nvidia-v1:0", "--out", str(tmp_path / "t.pkl")])
    assert "DRAWS must be in 1..12" in capsys.readouterr().err


def test_seed_run_passes_the_hardware_to_the_teacher_and_every_seed(tmp_path):
    from agents.zoo.seeds import PlanError, Settings, option_values, plan

    s = Settings(tmp_path / "out", tmp_path / "w", 16, hardware="nvidia-v1:2:0")
    pl = plan("kv_admission", s)
    for argv in (pl.teacher.argv, *(c.argv for c in pl.seeds)):
        assert option_values(list(argv), "--hardware") == ["nvidia-v1:2:0"], argv
    for bad, msg in (("nvidia-v1:0", "DRAWS must be in"), ("gpu-v9", "unknown distribution")):
        with pytest.raises(PlanError, match=msg):
            plan("kv_admission", Settings(tmp_path / "out", tmp_path / "w", 16, hardware=bad))
    with pytest.raises(PlanError, match="not with SLO tiers"):
        plan("kv_admission", Settings(tmp_path / "out", tmp_path / "w", 16, mode="tiers", hardware="nvidia-v1:2"))
    with pytest.raises(PlanError, match="--hardware: prefix_eviction's seed run does not take it"):
        plan("prefix_eviction", Settings(tmp_path / "out", tmp_path / "w", 16, hardware="nvidia-v1:2"))
