"""RL fine-tuning after DAgger (issue 21): ``train.py --imitate N --timesteps M`` and ``--init FILE`` start PPO
from the imitated policy, and ``--critic-warmup`` trains the value function alone first."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from agents.train import main
from envs.autoscale import env as asc

# One-hour Autoscale days (120 decisions), 4 envs: seconds per run.
KW = ["episode_s=3600.0", "train_days=2", "test_days=1", "rate_rps=30.0", "teacher_cover=1.1"]
BASE = ["--env", "Autoscale", "--env-kwargs", *KW, "--n-envs", "4", "--seed", "0", "--no-eval", "--no-progress",
        "--hyperparams", "n_steps=32", "batch_size=64", "n_epochs=2"]


def _probe() -> tuple[np.ndarray, np.ndarray]:
    """Observations and masks [120, ...] of one training day played by the teacher."""
    v = asc.AutoscaleVecEnv(1, seed=0, episode_s=3600.0, train_days=2, test_days=1, rate_rps=30.0, teacher_cover=1.1)
    obs, masks = [v.reset()], [v.action_masks()]
    for _ in range(119):
        o, _, _, _ = v.step(v.teacher_actions())
        obs.append(o)
        masks.append(v.action_masks())
    return np.concatenate(obs), np.concatenate(masks)


def _probs(model, obs, masks) -> np.ndarray:
    """The policy's action probabilities [B, A] on the probe states."""
    with th.no_grad():
        dist = model.policy.get_distribution(th.as_tensor(obs), action_masks=masks)
    return dist.distribution.probs.numpy()


class _Record(BaseCallback):
    """The model's action probabilities on the probe states when ``learn`` starts, before any update."""

    def __init__(self, obs, masks):
        super().__init__()
        self.obs, self.masks, self.probs = obs, masks, None

    def _on_training_start(self) -> None:
        self.probs = _probs(self.model, self.obs, self.masks)

    def _on_step(self) -> bool:
        return True


@pytest.fixture(scope="module")
def imitated(tmp_path_factory):
    from sb3_contrib import MaskablePPO

    out = tmp_path_factory.mktemp("dagger")
    assert main([*BASE, "--imitate", "768", "--timesteps", "0", "--out", str(out)]) == 0
    return out / "final.zip", MaskablePPO.load(out / "final.zip")


def test_fine_tune_starts_from_the_imitated_policy(imitated, tmp_path):
    path, bc = imitated
    obs, masks = _probe()
    want = _probs(bc, obs, masks)
    for extra in (["--imitate", "768"], ["--init", str(path)]):  # DAgger in the same run, or a saved DAgger model
        rec = _Record(obs, masks)
        assert main([*BASE, *extra, "--timesteps", "128", "--out", str(tmp_path / extra[0][2:])], callbacks=[rec]) == 0
        np.testing.assert_array_equal(rec.probs, want)


def test_critic_warmup_moves_the_value_function_only(imitated, tmp_path):
    from sb3_contrib import MaskablePPO

    path, bc = imitated
    obs, masks = _probe()
    runs = {}
    for warm in (256, 0):  # 256 = every RL step of the run: the actor never trains
        out = tmp_path / f"w{warm}"
        assert main([*BASE, "--init", str(path), "--timesteps", "256", "--critic-warmup", str(warm),
                     "--out", str(out)]) == 0
        runs[warm] = MaskablePPO.load(out / "final.zip")
    bc_sd, warm_sd, free_sd = (m.policy.state_dict() for m in (bc, runs[256], runs[0]))
    for name, t in bc_sd.items():
        value = name.startswith(("mlp_extractor.value_net.", "value_net."))
        assert th.equal(t, warm_sd[name]) != value, name  # actor unchanged, critic trained
        assert not th.equal(t, free_sd[name]), name  # without the warm-up PPO moves both
    np.testing.assert_array_equal(_probs(runs[256], obs, masks), _probs(bc, obs, masks))
    assert np.abs(_probs(runs[0], obs, masks) - _probs(bc, obs, masks)).max() > 1e-4  # the probe tells them apart
    assert all(p.requires_grad for p in runs[256].policy.parameters())  # saved trainable


@pytest.mark.parametrize("extra, msg", [
    (["--init", "nope.zip", "--timesteps", "64"], "--init nope.zip: no such file"),
    (["--timesteps", "64", "--critic-warmup", "65"], r"--critic-warmup 65: must be in 0..--timesteps \(64\)"),
    (["--timesteps", "64", "--critic-warmup", "-1"], r"--critic-warmup -1: must be in"),
])
def test_train_refuses_bad_fine_tune_options(tmp_path, capsys, extra, msg):
    with pytest.raises(SystemExit) as exc:
        main([*BASE, *extra, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and __import__("re").search(msg, err[-1]) and not (tmp_path / "run").exists()


def test_init_that_is_no_zip_is_refused_before_the_run_naming_the_file_once(tmp_path, capsys):
    """--init with a file that is no zip: one line in the argument checks, before any env is built (was
    '--init: F: unreadable observation record servegym.json (File is not a zip file)' after the batch)."""
    f = tmp_path / "weights.txt"
    f.write_text("not a checkpoint")
    with pytest.raises(SystemExit) as exc:
        main([*BASE, "--init", str(f), "--timesteps", "64", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err == [f"python train.py: error: --init {f}: not a zip file (an SB3 checkpoint "
                                           "is one)"], err


def test_init_names_a_file_of_another_shape(imitated, tmp_path, capsys):
    path, _ = imitated
    with pytest.raises(SystemExit) as exc:
        main([*BASE, "--init", str(path), "--timesteps", "64", "--hyperparams", "n_steps=32", "batch_size=64",
              "policy_kwargs={'net_arch':[8]}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and f"--init {path}: not a policy of this run's shape" in err[-1]


def test_a_resumed_run_keeps_the_warm_up_until_its_total_passes_it(imitated, tmp_path):
    from sb3_contrib import MaskablePPO

    path, bc = imitated
    obs, masks = _probe()
    out = tmp_path / "run"
    # one rollout (4 envs x 32 steps = 128) of critic only, then resumed for one more inside W = 256
    assert main([*BASE, "--init", str(path), "--timesteps", "128", "--critic-warmup", "128", "--out", str(out)]) == 0
    first = MaskablePPO.load(out / "checkpoint.zip")
    assert main([*BASE, "--resume", "--timesteps", "256", "--critic-warmup", "256", "--out", str(out)]) == 0
    resumed = MaskablePPO.load(out / "final.zip")
    assert resumed.num_timesteps == 256
    np.testing.assert_array_equal(_probs(resumed, obs, masks), _probs(bc, obs, masks))  # the actor stayed frozen
    assert not th.equal(resumed.policy.value_net.weight, first.policy.value_net.weight)  # the critic went on
