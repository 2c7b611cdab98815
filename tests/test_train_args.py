"""train.py's bad arguments: one line naming the argument, before any env is built."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("item", ["learning_rate=1e400", "clip_range=-1e999", "policy_kwargs.net_arch=[64, 1e400]"])
def test_a_hyperparameter_beyond_a_floats_range_is_refused(item, tmp_path):
    """--hyperparams learning_rate=1e400 (read as inf: 'inf' itself is no literal) trained a model whose weights
    went NaN, saved it and printed its table: it finished none of the 1,024 requests of each episode."""
    with pytest.raises(UsageError, match=rf"'{re.escape(item)}': a number beyond a float's range \(numbers must be "
                                         r"finite\)$"):
        train._train(train.build_parser().parse_args(["--timesteps", "128", "--out", str(tmp_path), *SMALL,
                                                      "--hyperparams", item]), None)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("item, line", [
    ("learning_rate=abc", "--hyperparams 'learning_rate=abc': 'abc' is not a Python literal (quote strings: key='text')"),
    ("n_steps=0", "--hyperparams n_steps=0: expected an integer >= 1"),
    ("learning_rate=-1", "--hyperparams learning_rate=-1: expected a number > 0"),  # was SB3's 'Invalid learning rate'
    # SB3 checks none of these: each trained
    ("gamma=2", "--hyperparams gamma=2: expected a number in [0, 1]"),
    ("gae_lambda=1.5", "--hyperparams gae_lambda=1.5: expected a number in [0, 1]"),
    ("clip_range=0", "--hyperparams clip_range=0: expected a number > 0"),
    ("learning_rate=0", "--hyperparams learning_rate=0: expected a number > 0"),
    ("ent_coef=-0.01", "--hyperparams ent_coef=-0.01: expected a number >= 0"),
    ("vf_coef='a'", "--hyperparams vf_coef='a': expected a number >= 0"),
])
def test_a_bad_hyperparameter_names_the_option_once(item, line, tmp_path):
    # was '--hyperparams: --hyperparams n_steps=0: expected an integer >= 1'
    with pytest.raises(UsageError) as err:
        train._train(train.build_parser().parse_args(["--timesteps", "128", "--out", str(tmp_path), *SMALL,
                                                      "--hyperparams", item]), None)
    assert str(err.value) == line


@pytest.mark.parametrize("items, line", [
    # trained a network whose hidden layer had no units (its output was the last bias alone), without an error
    (["policy_kwargs.net_arch=[0]"], "--hyperparams policy_kwargs.net_arch=[0]: expected a list of layer widths, "
                                     "integers >= 1 (or {'pi': [...], 'vf': [...]})"),
    (["policy_kwargs={'net_arch': {'pi': [64], 'q': [64]}}"],
     "--hyperparams policy_kwargs.net_arch={'pi': [64], 'q': [64]}: expected a dict of 'pi'/'vf' (or 'qf') lists of "
     "layer widths, integers >= 1"),
    # were torch's or SB3's tracebacks from the policy's constructor
    (["policy_kwargs.net_arch=['x']"], "--hyperparams policy_kwargs.net_arch=['x']: expected a list of layer widths"),
    (["policy_kwargs.foo=1"], "--hyperparams policy_kwargs={'net_arch': [64, 64], 'foo': 1}: MaskablePPO cannot "
                              "build its policy with them (TypeError: "),
    (["policy_kwargs.activation_fn=1"], "MaskablePPO cannot build its policy with them (TypeError: 'int' object is "
                                        "not callable)"),
    (["policy_kwargs=5"], "--hyperparams policy_kwargs=5: MaskablePPO cannot build its policy with them (TypeError: "),
])
def test_bad_policy_kwargs_are_one_line(items, line, tmp_path):
    with pytest.raises(UsageError) as err:
        train._train(train.build_parser().parse_args(["--timesteps", "128", "--out", str(tmp_path), *SMALL,
                                                      "--hyperparams", *items]), None)
    assert line in str(err.value) and "\n" not in str(err.value)


def test_n_envs_not_a_multiple_of_the_families_is_refused_before_any_env_is_built(tmp_path, monkeypatch):
    """Autoscale's ``--families all`` (3 families, two of them ServeGen days) used to build and check every
    family's scenario (minutes on a fresh cache) before ``make_family_vec`` refused ``--n-envs 8``."""
    def built(*args, **kwargs):
        raise AssertionError("a family's env was built before --n-envs was checked")

    monkeypatch.setattr(train.cli, "check_env", built)
    argv = ["--env", "servegym/Autoscale-v0", "--families", "all", "--n-envs", "8", "--timesteps", "128",
            "--no-eval", "--no-progress", "--out", str(tmp_path)]
    with pytest.raises(UsageError, match=r"--n-envs 8: must be a multiple of the 3 families"):
        train._train(train.build_parser().parse_args(argv), None)


def test_imitate_kwargs_help_names_every_key_it_takes():
    """The help listed six keys; beta0 and roll_in were taken too (the refusal of an unknown key named them)."""
    action = next(x for x in train.build_parser()._actions if "--imitate-kwargs" in x.option_strings)
    with pytest.raises(ValueError) as err:
        train.parse_imitate_kwargs(["nope=1"])
    taken = str(err.value).split("is not one of ")[1].split(", ")
    assert {"beta0", "roll_in", "target", "epochs"} <= set(taken)
    assert all(re.search(rf"\b{k}\b", action.help) for k in taken), (taken, action.help)
