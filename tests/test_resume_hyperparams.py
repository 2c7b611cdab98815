"""train.py --resume trains with the checkpoint's hyperparameters (SB3 restores them): different
--hyperparams are refused instead of being recorded in run.json while ignored."""

from __future__ import annotations

import json

import pytest

from agents import train

ARGS = ["--timesteps", "128", "--n-envs", "2", "--algo", "ppo", "--env-kwargs", "window_requests=32",
        "--no-eval", "--no-progress", "--save-every", "64"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "r"
    assert train.main([*ARGS, "--hyperparams", "n_steps=32", "batch_size=32", "--out", str(out)]) == 0
    return out


def test_creation_hyperparams_are_recorded_and_a_resume_without_them_records_them(run):
    assert json.loads((run / "hyperparams.json").read_text()) == {"batch_size": 32, "n_steps": 32}
    assert train.main(["--timesteps", "192", *ARGS[2:], "--out", str(run), "--resume"]) == 0
    recorded = json.loads((run / "run.json").read_text())
    assert recorded["hyperparams"] == {"batch_size": 32, "n_steps": 32} and recorded["timesteps"] >= 192
    # the same ones again are fine (agents.sweep resumes its trials that way)
    assert train.main(["--timesteps", "256", *ARGS[2:], "--hyperparams", "batch_size=32", "n_steps=32",
                       "--out", str(run), "--resume"]) == 0


def test_different_hyperparams_on_resume_are_refused_in_one_line(run, capsys):
    before = (run / "checkpoint.zip").stat().st_mtime_ns
    with pytest.raises(SystemExit) as err:
        train.main(["--timesteps", "512", *ARGS[2:], "--hyperparams", "n_steps=64", "--out", str(run), "--resume"])
    msg = capsys.readouterr().err.strip()
    assert err.value.code == 2 and len(msg.splitlines()) == 1 and "hyperparams.json" in msg
    assert msg.startswith("python train.py: error: --hyperparams n_steps=64: --resume keeps the checkpoint's")
    assert (run / "checkpoint.zip").stat().st_mtime_ns == before  # refused before anything ran


def test_a_checkpoint_without_the_record_keeps_the_given_ones_with_a_note(run, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run, old)
    (old / "hyperparams.json").unlink()
    assert train.main(["--timesteps", "320", *ARGS[2:], "--hyperparams", "n_steps=32", "batch_size=32",
                       "--out", str(old), "--resume"]) == 0
    assert "hyperparams.json not found" in capsys.readouterr().err
