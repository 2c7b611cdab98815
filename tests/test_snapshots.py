"""train.py --snapshots: DIR/steps_N.zip is the model a run of --timesteps N ends with."""

from __future__ import annotations

import json

import pytest
import torch as th

from agents import snapshot_eval, train
from agents.cli import UsageError
from agents.sb3_policy import algo_class

SMALL = ["--n-envs", "4", "--env-kwargs", "window_requests=64", "--hyperparams", "n_steps=32", "batch_size=64",
         "n_epochs=2", "--no-eval", "--no-progress"]


def _params(path):
    model = algo_class("maskable-ppo").load(path, device="cpu")
    return model.num_timesteps, model.policy.state_dict(), model.policy.optimizer.state_dict()["state"]


def test_snapshot_equals_the_final_model_of_the_shorter_run(tmp_path, capsys):
    # 128 steps per rollout: a snapshot at 200 is taken after the second rollout's update (256 steps),
    # where a --timesteps 200 run stops
    assert train.main(["--timesteps", "512", "--snapshots", "200", "512", "--out", str(tmp_path / "long"),
                       *SMALL[:-2], "--eval-episodes", "1", "--eval-at", "1.1", "--no-progress"]) == 0
    assert train.main(["--timesteps", "200", "--out", str(tmp_path / "short"), *SMALL]) == 0
    steps, snap, snap_opt = _params(tmp_path / "long" / "steps_200.zip")
    short_steps, short, short_opt = _params(tmp_path / "short" / "final.zip")
    assert steps == short_steps == 256
    assert snap.keys() == short.keys()
    for k in snap:
        assert th.equal(snap[k], short[k]), k
    for i in snap_opt:  # Adam's moments too: the snapshot would resume as the shorter run would
        assert th.equal(snap_opt[i]["exp_avg"], short_opt[i]["exp_avg"])
    # a snapshot at the run's own total is its final model
    last, final = _params(tmp_path / "long" / "steps_512.zip"), _params(tmp_path / "long" / "final.zip")
    assert last[0] == final[0] == 512 and all(th.equal(last[1][k], final[1][k]) for k in final[1])
    # and the longer run went on learning past the snapshot
    assert not all(th.equal(snap[k], final[1][k]) for k in snap)
    # agents.snapshot_eval plays train.py's held-out evaluation: the final-step snapshot scores as final.zip did
    assert snapshot_eval.main([str(tmp_path / "long")]) == 0
    ours = json.loads((tmp_path / "long" / "eval_steps_512.json").read_text())["results"][0]["metrics"]
    trains = json.loads((tmp_path / "long" / "eval.json").read_text())["results"][0]["metrics"]
    assert ours == trains
    assert f"{tmp_path / 'long'} 200 slo_attainment" in capsys.readouterr().out
    run = json.loads((tmp_path / "long" / "run.json").read_text())
    assert run["snapshots"] == {"200": str(tmp_path / "long" / "steps_200.zip"),
                                "512": str(tmp_path / "long" / "steps_512.zip")}


def test_snapshot_beyond_the_run_is_refused(tmp_path):
    with pytest.raises(UsageError, match="--snapshots 600: must be in 1..--timesteps"):
        train._train(train.build_parser().parse_args(["--timesteps", "512", "--snapshots", "600",
                                                       "--out", str(tmp_path), *SMALL]), None)


def test_a_snapshot_given_twice_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"^--snapshots 32: given twice$"):
        train._train(train.build_parser().parse_args(["--timesteps", "512", "--snapshots", "32", "64", "32",
                                                       "--out", str(tmp_path), *SMALL]), None)


def test_snapshot_eval_refuses_a_run_without_snapshots(tmp_path):
    assert train.main(["--timesteps", "128", "--out", str(tmp_path), *SMALL]) == 0
    with pytest.raises(SystemExit):
        snapshot_eval.main([str(tmp_path)])
    with pytest.raises(ValueError, match="the run kept no snapshots"):
        snapshot_eval.snapshot_args(tmp_path)
    with pytest.raises(ValueError, match="nothing: no such directory"):  # was "no run.json", as if it were there
        snapshot_eval.snapshot_args(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no run.json"):
        snapshot_eval.snapshot_args(tmp_path / "empty")


def test_a_resumed_run_keeps_no_snapshot_of_steps_it_had_passed(tmp_path, capsys):
    assert train.main(["--timesteps", "256", "--out", str(tmp_path), "--save-every", "64", *SMALL]) == 0
    assert train.main(["--timesteps", "512", "--snapshots", "128", "384", "--resume", "--out", str(tmp_path),
                       *SMALL]) == 0
    assert not (tmp_path / "steps_128.zip").exists()
    assert "--snapshots 128: not kept (the resumed checkpoint is at 256 steps)" in capsys.readouterr().out
    assert _params(tmp_path / "steps_384.zip")[0] == 384


def test_default_timesteps_are_the_environments():
    from agents.training import default_timesteps

    assert default_timesteps("servegym/KVAdmission-v0", "maskable-ppo") == 200_000  # python train.py's run
    assert default_timesteps("servegym/KVAdmission-v0", "ppo") == 300_000
    assert default_timesteps("servegym/Routing-v0", "maskable-ppo") == 300_000
    # the default is the one checked: a snapshot past KVAdmission's 200k steps is refused before any training
    with pytest.raises(UsageError, match=r"--snapshots 250000: must be in 1..--timesteps \(200000\)"):
        train._train(train.build_parser().parse_args(["--snapshots", "250000", "--no-progress"]), None)


def _record(run_dir, command, snapshots):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps({"command": command, "snapshots": snapshots}))


def test_snapshot_eval_names_a_bad_directory_or_record(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file: not a directory"):  # was a NotADirectoryError traceback
        snapshot_eval.snapshot_args(tmp_path / "file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken/run.json: not valid JSON"):
        snapshot_eval.snapshot_args(tmp_path / "broken")


def test_snapshot_eval_refuses_a_families_run(tmp_path):
    # evaluated on --trace's default, not on each family's trace, before this was refused
    _record(tmp_path, "python train.py --env Autoscale --families all --snapshots 64",
            {"64": str(tmp_path / "steps_64.zip")})
    with pytest.raises(ValueError, match="--families run"):
        snapshot_eval.snapshot_args(tmp_path)


def test_snapshot_eval_prefers_the_directorys_own_copy_and_names_a_missing_one(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "steps_64.zip").write_text("copy")
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "steps_64.zip").write_text("original")
    snaps = {64: tmp_path / "orig" / "steps_64.zip", 128: tmp_path / "orig" / "steps_128.zip"}
    with pytest.raises(ValueError, match="snapshot steps_128.zip is missing"):
        snapshot_eval.snapshot_paths(tmp_path / "run", snaps)
    (tmp_path / "orig" / "steps_128.zip").write_text("original")
    assert snapshot_eval.snapshot_paths(tmp_path / "run", snaps) == {
        64: tmp_path / "run" / "steps_64.zip", 128: tmp_path / "orig" / "steps_128.zip"}



def test_snapshot_eval_prints_each_environments_main_metric_and_checks_every_dir_first(tmp_path, capsys,
                                                                                       monkeypatch):
    """A PrefixEviction-v0 (or ExpertPlacement-v0) run's snapshot line was a KeyError traceback: its evaluation
    reports no slo_attainment; the line gives the environment's main metric. A DIR given twice was evaluated
    twice, and a bad second DIR was refused only after the first one's snapshots had played."""
    played = []

    def fake_evaluate(env_id, policies, *args, **kwargs):
        played.append(policies[0])
        return {"results": [{"policy": policies[0], "metrics": {"block_hit_ratio": 0.1125, "return_mean": 42.5}}]}

    monkeypatch.setattr(snapshot_eval, "evaluate", fake_evaluate)
    run = tmp_path / "pe"
    _record(run, "python train.py --env PrefixEviction --snapshots 128", {"128": str(run / "steps_128.zip")})
    (run / "steps_128.zip").write_text("x")
    with pytest.raises(SystemExit):
        snapshot_eval.main([str(run), str(tmp_path / "nothing")])
    assert played == [] and "nothing: no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        snapshot_eval.main([str(run), str(tmp_path / "pe" / ".." / "pe")])
    assert played == [] and "given twice" in capsys.readouterr().err
    assert snapshot_eval.main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"{run} 128 block_hit_ratio 0.1125 return_mean 42.5"
    assert (run / "eval_steps_128.json").is_file()
