"""agents.profile_train: the learner's time split into collection and update, the update by part."""

from __future__ import annotations

import cProfile
import pstats

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
