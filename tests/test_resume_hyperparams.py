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


def test_a_budget_below_one_rollout_says_the_steps_it_ran_and_why(tmp_path, capsys):
    """--timesteps 512 with 16 envs x n_steps 256 ran 4,096 steps and said only '4096 RL steps': SB3 runs
    whole rollouts. The run still rounds up (as SB3 users expect); the printed lines and run.json say so."""
    out = tmp_path / "r"
    assert train.main(["--timesteps", "40", *ARGS[2:], "--hyperparams", "n_steps=32", "batch_size=32",
                       "--out", str(out)]) == 0
    note = "--timesteps 40 is rounded up to whole rollouts of n_steps 32 x 2 envs = 64 steps, as SB3 runs them: 64 steps"
    printed = capsys.readouterr().out
    assert f"note: {note}\n" in printed and f"by 64 RL steps ({note}) in" in printed
    run = json.loads((out / "run.json").read_text())
    assert (run["timesteps"], run["timesteps_requested"], run["timesteps_note"]) == (64, 40, note)
    # a whole number of rollouts has no note
    assert train.main(["--timesteps", "64", *ARGS[2:], "--hyperparams", "n_steps=32", "batch_size=32",
                       "--out", str(tmp_path / "s")]) == 0
    run = json.loads((tmp_path / "s" / "run.json").read_text())
    assert (run["timesteps"], run["timesteps_requested"]) == (64, 64) and "timesteps_note" not in run
    assert "note:" not in capsys.readouterr().out
