"""train.py's bad arguments: one line naming the argument, before any env is built."""

from __future__ import annotations

import pytest

from agents import train
from agents.cli import UsageError

SMALL = ["--n-envs", "4", "--env-kwargs", "window_requests=64", "--hyperparams", "n_steps=32", "batch_size=64",
         "n_epochs=2", "--no-eval", "--no-progress"]


def test_an_unwritable_out_is_refused_before_any_env_is_built(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="--out .*file/run: cannot create the directory"):
        train._train(train.build_parser().parse_args(["--timesteps", "128", "--out", str(tmp_path / "file" / "run"),
                                                       *SMALL]), None)


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed -1: must be >= 0"),  # was blamed on --env-kwargs
    (["--eval-at", "inf"], "--eval-at inf: must be a finite number"),  # was an evaluation at load inf
])
def test_train_names_a_bad_seed_or_eval_at(argv, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        train._train(train.build_parser().parse_args(["--timesteps", "128", "--out", str(tmp_path), *SMALL, *argv]),
                     None)
