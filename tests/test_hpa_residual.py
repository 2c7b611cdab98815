"""agents.hpa_residual: a learned offset from HPA's fleet on Autoscale-v0 (issue 21)."""

import json
import warnings
import zipfile

import numpy as np
import pytest

import envs
from agents import hpa_residual as R
from agents.heuristics import autoscale as A
from agents.policy import make_policy
from agents.policy_base import PolicyFileError
from agents.rollout import run_episodes

ENV = "servegym/Autoscale-v0"
KW = dict(episode_s=3600.0, split="test", window_order="sequential", slo_penalty=0.001, slo_metric="tpot")


def _vec(n=3):
    return envs.make_vec(ENV, n, seed=0, **KW)


def _play_wrapped(wrapped, offsets):
    obs = wrapped.reset()
    out = [None] * wrapped.num_envs
    while any(m is None for m in out):
        obs, _, done, infos = wrapped.step(offsets(obs))
        for e in np.flatnonzero(done):
            if out[e] is None:
                out[e] = infos[e]["metrics"]
    return out


@pytest.mark.parametrize("window,tol", [(300.0, 0.1), (120.0, 0.1)])
def test_offset_zero_plays_the_base_hpa_exactly(window, tol):
    base = R.base_hpa(window, tol)
    vec = _vec()
    want, _ = run_episodes(vec, base(vec))
    wrapped = R.HPAResidualVecEnv(_vec(), max_offset=2, base=base)
    got = _play_wrapped(wrapped, lambda obs: np.full(len(obs), 2))
    for g, w in zip(got, want):
        assert {k: g[k] for k in w if k != "return_mean"} == {k: w[k] for k in w if k != "return_mean"}


def test_an_offset_changes_the_fleet_by_that_many_reference_replicas():
    wrapped = R.HPAResidualVecEnv(_vec(1), max_offset=2)
    obs = wrapped.reset()
    fleet = wrapped.res.fleet.copy()
    ref = wrapped.res.hpa.ref
    assert obs.shape == (1, wrapped.venv.observation_space.shape[0] + wrapped.res.hpa.G)
    assert np.allclose(obs[0, -wrapped.res.hpa.G:], fleet[0] / wrapped.res.hpa.max_n)
    a = wrapped.res.actions(np.array([4]), wrapped.venv.action_masks())  # offset +2
    deltas = np.stack(np.unravel_index(a, (9, 9))[::-1], 1) - 4
    now = wrapped.res.hpa.fleet(wrapped.res.obs)
    assert now[0, ref] + deltas[0, ref] == fleet[0, ref] + 2


def test_a_saved_residual_checkpoint_plays_through_make_policy(tmp_path):
    from stable_baselines3 import PPO

    base = R.base_hpa(120.0, 0.1)
    wrapped = R.HPAResidualVecEnv(_vec(2), max_offset=2, base=base)
    model = PPO("MlpPolicy", wrapped, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    path = tmp_path / "res.zip"
    R.save(model, path, 2, base)
    assert R.read_spec(path) == {"base": "hpa", "down_window_s": 120.0, "tolerance": 0.1, "max_offset": 2}
    vec = _vec(2)
    pol = make_policy(str(path), vec, ENV)
    assert isinstance(pol, R.HPAResidualPolicy)
    eps, _ = run_episodes(vec, pol)
    # the same deterministic offsets through the training wrapper give the same episodes
    again = _play_wrapped(R.HPAResidualVecEnv(_vec(2), 2, base), lambda o: model.predict(o, deterministic=True)[0])
    assert [e["cost_usd"] for e in eps] == [e["cost_usd"] for e in again]
    assert [e["slo_attainment"] for e in eps] == [e["slo_attainment"] for e in again]


def test_a_malformed_residual_record_is_one_line_naming_the_file(tmp_path):
    from stable_baselines3 import PPO

    wrapped = R.HPAResidualVecEnv(_vec(1), max_offset=1)
    model = PPO("MlpPolicy", wrapped, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    path = tmp_path / "bad.zip"
    R.save(model, path, 1, A.HPA)
    with zipfile.ZipFile(path, "a") as z:  # a second member of that name is the one read
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr(R.MEMBER, json.dumps({"base": "hpa", "down_window_s": -1, "tolerance": 0.1, "max_offset": 1}))
    with pytest.raises(PolicyFileError, match=r"bad\.zip: hpa_residual\.json: .*down_window_s must be a finite"):
        R.read_spec(path)
    for bad in ({"down_window_s": 1e308}, {"max_offset": 10**30}, {"tolerance": 1e9}):
        spec = {"base": "hpa", "down_window_s": 120.0, "tolerance": 0.1, "max_offset": 1, **bad}
        with zipfile.ZipFile(path, "a") as z, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr(R.MEMBER, json.dumps(spec))
        with pytest.raises(PolicyFileError, match=rf"bad\.zip: hpa_residual\.json: .*{next(iter(bad))} must be"):
            R.read_spec(path)


def test_the_cli_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    out = str(tmp_path / "o")
    for argv, what in ((["--out", out, "--timesteps", "0"], "--timesteps must be >= 1"),
                       (["--out", out, "--down-window", "-5"], "down_window_s must be a finite number in [0, 3600]"),
                       (["--out", out, "--down-window", "1e308"], "down_window_s must be a finite number in [0, 3600]"),
                       (["--out", out, "--tolerance", "1"], "tolerance must be a finite number in [0, 1)"),
                       (["--out", out, "--max-offset", "0"], "--max-offset must be in [1, 64]"),
                       (["--out", out, "--max-offset", "4000000000"], "--max-offset must be in [1, 64]"),
                       (["--out", out, "--penalties", "0"], "--penalties must be finite numbers > 0"),
                       (["--out", out, "--prior", "nan"], "--prior must be a finite number"),
                       (["--out", out, "--ent-coef", "-1"], "--ent-coef must be a finite number >= 0"),
                       (["--out", out, "--seed", "-1"], "--seed must be >= 0"),
                       (["--out", ""], "--out must name a folder"),
                       (["--out", str(afile)], f"--out {afile}: cannot be made a folder")):
        with pytest.raises(SystemExit):
            R.main(argv)
        assert what in capsys.readouterr().err, argv
    assert not (tmp_path / "o").exists()


def test_the_committed_residual_agent_plays_through_make_policy():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "agents" / "zoo" / "autoscale_hpa_residual.zip"
    assert R.read_spec(path) == {"base": "hpa", "down_window_s": 120.0, "tolerance": 0.1, "max_offset": 2}
    vec = _vec(2)
    eps, _ = run_episodes(vec, make_policy(str(path), vec, ENV))
    assert all(0.0 < e["slo_attainment"] <= 1.0 and e["cost_usd"] > 0 for e in eps)


def test_export_refuses_a_residual_checkpoint_in_one_line(tmp_path, capsys):
    from pathlib import Path

    from agents import export

    path = Path(__file__).resolve().parents[1] / "agents" / "zoo" / "autoscale_hpa_residual.zip"
    with pytest.raises(SystemExit) as ended:
        export.main(["--env", ENV, "--policy", str(path), "--onnx", str(tmp_path / "x.onnx"), "--no-parity"])
    assert ended.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in last and "an HPA-residual checkpoint" in last and not (tmp_path / "x.onnx").exists()
