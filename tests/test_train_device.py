"""``train.py --device``: the device resolution, the one-line error for cuda without a CUDA
device, and a CPU run whose model and record say cpu (the lead checks cuda on the GPU machine)."""

from __future__ import annotations

import json

import pytest
import torch as th

from agents import train
from agents.training import policy_spec, resolve_device

ENV = "servegym/KVAdmission-v0"


def test_auto_is_cpu_for_mlp_policies_and_cuda_for_others_where_available(monkeypatch):
    monkeypatch.setattr(th.cuda, "is_available", lambda: True)
    assert policy_spec("maskable-ppo", ENV) == "MlpPolicy"
    assert resolve_device("auto", policy_spec("maskable-ppo", ENV)) == "cpu"
    assert resolve_device("auto", policy_spec("maskable-ppo", "servegym/PrefixEviction-v0")) == "cpu"
    assert resolve_device("auto", "CnnPolicy") == "cuda"
    assert resolve_device("cuda", "MlpPolicy") == "cuda"
    monkeypatch.setattr(th.cuda, "is_available", lambda: False)
    assert resolve_device("auto", "CnnPolicy") == "cpu"
    assert resolve_device("cpu", "CnnPolicy") == "cpu"
    with pytest.raises(ValueError, match="--device 'tpu'"):
        resolve_device("tpu", "MlpPolicy")


def test_device_cuda_without_cuda_is_one_line_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(th.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exc:
        train.main(["--device", "cuda", "--timesteps", "64", "--n-envs", "2", "--out", str(tmp_path),
                    "--no-eval", "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--device cuda: torch " + th.__version__ + " sees no CUDA device "
                            "(torch.cuda.is_available() is False); use --device cpu or auto"), err
    assert not (tmp_path / "final.zip").exists()


def test_device_cpu_trains_resumes_and_records_cpu(tmp_path):
    args = ["--device", "cpu", "--algo", "ppo", "--timesteps", "256", "--n-envs", "2",
            "--env-kwargs", "window_requests=64", "--out", str(tmp_path), "--no-eval", "--no-progress"]
    assert train.main(args) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["device"] == "cpu"
    from agents.sb3_policy import algo_class

    model = algo_class("ppo").load(tmp_path / "final.zip", device="cpu")
    assert all(p.device.type == "cpu" for p in model.policy.parameters())
    args[args.index("--timesteps") + 1] = "512"
    assert train.main([*args, "--resume"]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["timesteps"] >= 512


def test_kv_admission_default_rollout_is_64_envs_by_64_steps_and_the_zoo_recipe_keeps_its_16_envs(tmp_path):
    """train.py's KVAdmission default is 64 envs x 64 steps (the 4,096-step rollout of 16 x 256 in a
    quarter of the policy calls, a held-out score as good over 5 seeds; 256 x 16 trained a far worse
    policy, agents/training.py); default_n_envs answers 16 where N_ENVS lists nothing."""
    from agents.training import HYPERPARAMS, default_n_envs
    from agents.zoo import RECIPES

    assert default_n_envs(ENV, "maskable-ppo") == 64 and default_n_envs("servegym/Routing-v0", "maskable-ppo") == 16
    assert default_n_envs(ENV, "ppo") == 16 and HYPERPARAMS[ENV]["ppo"]["n_steps"] == 256
    assert HYPERPARAMS[ENV]["maskable-ppo"]["n_steps"] == 64
    assert train.main(["--timesteps", "512", "--env-kwargs", "window_requests=64", "--out", str(tmp_path),
                       "--no-eval", "--no-progress"]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["n_envs"] == 64
    args = RECIPES[ENV].train_args  # the zoo agent (DAgger) was trained with 16 envs: its recipe says so
    assert args[args.index("--n-envs") + 1] == "16"


def test_train_learns_with_distribution_validation_off_and_restores_it(tmp_path):
    """Issue 16: torch's argument checks of distributions are off in train.py's hot loop (SB3 builds a
    distribution at every policy call and update) and back to what they were afterwards."""
    from stable_baselines3.common.callbacks import BaseCallback

    seen: list[bool] = []

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(bool(th.distributions.Distribution._validate_args))
            return True

    before = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(True)
    try:
        assert train.main(["--timesteps", "128", "--n-envs", "2", "--env-kwargs", "window_requests=64",
                           "--hyperparams", "n_steps=64", "batch_size=64", "--out", str(tmp_path), "--no-eval",
                           "--no-progress"], callbacks=[Record()]) == 0
        assert seen and not any(seen)
        assert th.distributions.Distribution._validate_args is True
    finally:
        th.distributions.Distribution.set_default_validate_args(before)
