"""agents.profile_train: the learner's time split into collection and update, the update by part."""

from __future__ import annotations

import cProfile
import pstats
import re

import pytest

import torch as th

from agents import profile_train


def test_split_puts_torch_ops_under_the_part_that_called_them():
    net = th.nn.Sequential(th.nn.Linear(16, 64), th.nn.Tanh(), th.nn.Linear(64, 4))
    opt = th.optim.Adam(net.parameters())
    x = th.randn(256, 16)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        logits = net(x)
        loss = -th.distributions.Categorical(logits=logits).entropy().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    prof.disable()
    parts = profile_train.split(pstats.Stats(prof))
    for part in ("backward", "forward (linear, tanh)", "distributions", "optimizer (Adam, clip)"):
        assert parts[part] > 0, (part, parts)
    assert parts["rollout buffer"] == 0
    total = sum(pstats.Stats(prof).stats[k][2] for k in pstats.Stats(prof).stats)
    assert abs(sum(parts.values()) - total) < 1e-6  # every self second counted once


def test_main_prints_the_split(capsys):
    assert profile_train.main(["--n-envs", "4", "--hyperparams", "n_steps=32", "batch_size=64",
                               "--rollouts", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 envs x 32 steps, batch 64, 4 epochs (8 gradient steps per update), net [64, 64]" in out
    assert "per rollout: collect" in out and "backward" in out
    assert "env steps per second:" in out and "worker processes" not in out


def test_main_steps_the_envs_in_worker_processes(capsys):
    """--vec-procs: train.py's SubprocNativeVecEnv, so a multi-process run's split can be measured."""
    assert profile_train.main(["--n-envs", "4", "--vec-procs", "2", "--hyperparams", "n_steps=16", "batch_size=32",
                               "--rollouts", "1"]) == 0
    out = capsys.readouterr().out
    assert "4 envs x 16 steps" in out and ", 2 worker processes" in out


@pytest.mark.parametrize("argv, message", [
    (["--n-envs", "0"], "--n-envs 0: must be >= 1"),  # was silently the default
    (["--n-envs", "-3"], "--n-envs -3: must be >= 1"),  # was an IndexError traceback
    (["--env", "nope"], "unknown environment 'nope'"),  # was a KeyError traceback (so was a short name)
    (["--hyperparams", "n_steps=0"], "n_steps=0: expected an integer >= 1"),  # was an UnboundLocalError
    (["--vec-procs", "0"], "--vec-procs 0: must be >= 1"),
    (["--n-envs", "2", "--vec-procs", "3"], "--vec-procs 3: more worker processes than envs (2)"),
])
def test_bad_arguments_end_in_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        profile_train.main([*argv, "--rollouts", "1"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_count_hyperparameters_must_be_positive_integers():
    import envs
    from agents.training import make_model

    vec = envs.make_vec("servegym/KVAdmission-v0", 2, seed=0, trace="default", split="train", window_requests=64)
    for key, value in (("n_steps", 0), ("batch_size", 0), ("n_epochs", 0), ("n_steps", 1.5), ("n_epochs", True)):
        with pytest.raises(ValueError, match=f"{key}={value!r}: expected an integer >= 1"):
            make_model("maskable-ppo", "servegym/KVAdmission-v0", vec, 0, None, {key: value})


def test_out_of_range_hyperparameters_are_refused_by_make_model_too():
    """The Python API (make_model's overrides) meets the same check as --hyperparams (agents.training.
    check_hyperparams); the edges of each range are accepted."""
    import envs
    from agents.training import check_hyperparams, make_model

    vec = envs.make_vec("servegym/KVAdmission-v0", 2, seed=0, trace="default", split="train", window_requests=64)
    for key, value, says in (("gamma", 2.0, "in [0, 1]"), ("tau", 0.0, "in (0, 1]"), ("max_grad_norm", -1, "> 0"),
                             ("target_kl", 0, "> 0"), ("exploration_final_eps", 1.5, "in [0, 1]")):
        with pytest.raises(ValueError, match=f"^--hyperparams {key}={value!r}: expected a number {re.escape(says)}$"):
            check_hyperparams({key: value})
    with pytest.raises(ValueError, match=r"^--hyperparams gamma=2.0: expected a number in \[0, 1\]$"):
        make_model("maskable-ppo", "servegym/KVAdmission-v0", vec, 0, None, {"gamma": 2.0})
    check_hyperparams({"gamma": 1, "gae_lambda": 0.0, "ent_coef": 0, "target_kl": None, "clip_range_vf": None,
                       "learning_rate": lambda progress: 3e-4 * progress, "tau": 1.0})
