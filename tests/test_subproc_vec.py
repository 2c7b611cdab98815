"""envs.subproc_vec and train.py --vec-procs: E envs over N worker processes play and train
exactly as one batch in one process (same seed, same result)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th

import envs
from agents import train
from envs.subproc_vec import SubprocNativeVecEnv, split_envs

ENV = "servegym/Disaggregation-v0"
SMALL = dict(instances=3, phases=2, phase_s=20.0, interval_s=5.0, load=0.6, episodes_per_load=2, drain_s=30.0,
             switch_s=3.0)


def test_split_envs_contiguous_and_checked():
    assert split_envs(5, 2) == [(0, 3), (3, 5)]
    assert split_envs(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    for bad in (0, 6, True):
        with pytest.raises(ValueError, match="procs must be"):
            split_envs(5, bad)


@pytest.mark.parametrize("order", ["random", "sequential"])
def test_workers_play_as_one_batch(order):
    E = 5
    one = envs.make_vec(ENV, E, seed=3, window_order=order, **SMALL)
    many = SubprocNativeVecEnv(ENV, E, 2, seed=3, window_order=order, **SMALL)
    try:
        np.testing.assert_array_equal(one.reset(), many.reset())
        rng = np.random.default_rng(0)
        R = one.R
        ends = 0
        for _ in range(3 * one.config.decisions):
            m1, m2 = one.action_masks(), many.action_masks()
            np.testing.assert_array_equal(m1, m2)
            assert [list(x) for x in many.env_method("action_masks")] == [list(x) for x in m1]
            a = np.array([[rng.choice(np.flatnonzero(m1[e, 3 * r: 3 * r + 3])) for r in range(R)]
                          + [rng.integers(0, 2)] for e in range(E)], np.int64)
            o1, r1, d1, i1 = one.step(a)
            o2, r2, d2, i2 = many.step(a)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(d1, d2)
            for e in np.flatnonzero(d1):
                assert i1[e]["metrics"] == i2[e]["metrics"] and i1[e]["episode"] == i2[e]["episode"]
                np.testing.assert_array_equal(i1[e]["terminal_observation"], i2[e]["terminal_observation"])
                ends += 1
        assert ends >= 2 * E  # whole episodes, autoresets included
        assert many.get_attr("R", [4, 0]) == [R, R]
    finally:
        many.close()


def test_worker_errors_are_raised_here():
    with pytest.raises(TypeError, match="unknown config field"):
        SubprocNativeVecEnv(ENV, 2, 2, seed=0, no_such_field=1)


def test_a_misshapen_action_or_bad_seed_is_refused_for_the_whole_batch():
    """Each worker checked only its slice of the actions, so a batch of the wrong size read as a slice's shape (or
    played); the batch's shapes and dtype are named here, never the array, and a bad seed names seed."""
    many = SubprocNativeVecEnv(ENV, 3, 2, seed=0, **SMALL)
    try:
        many.reset()
        with pytest.raises(ValueError, match=r"^SubprocNativeVecEnv servegym/Disaggregation-v0: actions must be integers "
                                             r"of shape \(3, 4\) .*; got int64 array of shape \(5, 4\)$"):
            many.step(np.zeros((5, 4), np.int64))
        with pytest.raises(ValueError, match=r"^SubprocNativeVecEnv servegym/Disaggregation-v0: seed must be None or an "
                                             r"integer >= 0 .*, got -1$"):
            many.seed(-1)
    finally:
        many.close()


def _train(tmp_path, procs: int):
    returns: list[float] = []

    from stable_baselines3.common.callbacks import BaseCallback

    class Returns(BaseCallback):
        def _on_step(self) -> bool:
            returns.extend(i["episode"]["r"] for i in self.locals["infos"] if "episode" in i)
            return True

    out = tmp_path / f"p{procs}"
    kw = [f"{k}={v}" for k, v in SMALL.items()]
    rc = train.main(["--env", ENV, "--timesteps", "288", "--n-envs", "4", "--vec-procs", str(procs), "--seed", "2",
                     "--out", str(out), "--no-eval", "--no-progress", "--env-kwargs", *kw,
                     "--hyperparams", "n_steps=24", "batch_size=48", "n_epochs=2"], callbacks=[Returns()])
    assert rc == 0
    from sb3_contrib import MaskablePPO

    model = MaskablePPO.load(out / "final.zip", device="cpu")
    return returns, {k: v.clone() for k, v in model.policy.state_dict().items()}, json.loads((out / "run.json").read_text())


def test_train_vec_procs_2_same_run_as_1(tmp_path):
    r1, p1, run1 = _train(tmp_path, 1)
    r2, p2, run2 = _train(tmp_path, 2)
    assert len(r1) >= 8 and r1 == r2  # every episode return, in order
    for k in p1:
        assert th.equal(p1[k], p2[k]), k
    assert run1["vec_procs"] == 1 and run2["vec_procs"] == 2 and run2["timesteps"] == run1["timesteps"]


def test_routing_workers_number_sequential_episodes_as_one_batch():
    # Routing-v0 draws its episodes in envs.routing.env.episode_draws, which takes the worker's slice.
    kw = dict(window_order="sequential", window_requests=64, replicas=2, load=(0.5, 0.9))
    E = 4
    one = envs.make_vec("servegym/Routing-v0", E, seed=1, **kw)
    many = SubprocNativeVecEnv("servegym/Routing-v0", E, 2, seed=1, **kw)
    try:
        np.testing.assert_array_equal(one.reset(), many.reset())
        for _ in range(200):
            a = one.action_masks().argmax(axis=1)
            o1, r1, d1, _ = one.step(a)
            o2, r2, d2, _ = many.step(a)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(d1, d2)
    finally:
        many.close()


def test_train_vec_procs_with_eval_at(tmp_path, capsys):
    """--eval-at with --vec-procs: the knob comes from the env class (the subprocess wrapper has no
    sweep()), and the evaluation plays that one value."""
    kw = [f"{k}={v}" for k, v in SMALL.items()]
    rc = train.main(["--env", ENV, "--timesteps", "96", "--n-envs", "2", "--vec-procs", "2", "--seed", "0",
                     "--out", str(tmp_path / "r"), "--no-progress", "--eval-at", "0.9", "--eval-episodes", "1",
                     "--env-kwargs", *kw, "--hyperparams", "n_steps=24", "batch_size=48", "n_epochs=1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "load=0.9" in out and "load=0.6" not in out
    assert set(json.loads((tmp_path / "r" / "run.json").read_text())["code"]) == {"commit", "dirty"}


def test_a_call_after_close_names_the_closed_env():
    """After close() the workers are gone: reset, step, action_masks and the SB3 plumbing were the pipe's bare
    BrokenPipeError; now one RuntimeError naming the call. A second close() does nothing."""
    many = SubprocNativeVecEnv(ENV, 3, 2, seed=0, **SMALL)
    many.reset()
    many.close()
    many.close()
    calls = {"reset": many.reset, "step": lambda: many.step(np.zeros((3, 4), np.int64)),
             "action_masks": many.action_masks, "seed": lambda: many.seed(1),
             "get_attr": lambda: many.get_attr("num_envs"), "set_attr": lambda: many.set_attr("x", 1),
             "env_method": lambda: many.env_method("feature_names")}
    for name, call in calls.items():
        with pytest.raises(RuntimeError, match=rf"^SubprocNativeVecEnv {ENV}: {name}\(\) after close\(\); its worker "
                                               r"processes have ended: build a new one$"):
            call()
