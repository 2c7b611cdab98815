"""ONNX export, OnnxPolicy, GuardedPolicy and the reference engine hook (issue 10)."""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents import export as X
from agents.guarded import GuardedPolicy
from agents.onnx_policy import OnnxPolicy
from agents.policy import ZOO, _load_registries, make_policy
from agents.policy_base import PolicyMismatch
from agents.zoo import RECIPES
from envs.core.engine import EngineSpec

ROOT = Path(__file__).resolve().parents[1]
KV = "servegym/KVAdmission-v0"
_load_registries()
ZOO_IDS = sorted(e for e, r in RECIPES.items() if r.trainer == "agents.train")  # single-env agents


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory) -> dict[str, tuple[Path, X.Parity]]:
    """Every zoo agent exported once, with the full 10,000-observation parity check."""
    out = {}
    for env_id in ZOO_IDS:
        path = tmp_path_factory.mktemp("zoo") / f"{env_id.split('/')[-1]}.onnx"
        out[env_id] = (path, X.export(env_id, "zoo", path, parity_obs=10_000))
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """PPO, MaskablePPO and DQN checkpoints from train.py, a few hundred steps each."""
    from agents import train

    out = {}
    for algo in ("ppo", "maskable-ppo", "dqn"):
        d = tmp_path_factory.mktemp(algo)
        with X.torch_one_thread():
            assert train.main(["--algo", algo, "--timesteps", "256", "--n-envs", "2", "--no-eval",
                               "--no-progress", "--out", str(d), "--seed", "1"]) == 0
        out[algo] = d / "final.zip"
    return out


def test_onnx_policy_imports_without_torch():
    code = ("import sys, agents.onnx_policy, agents.guarded; "
            "bad = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("env_id", ZOO_IDS)
def test_loading_and_running_an_export_imports_no_torch(zoo_onnx, env_id):
    """Loading a file checks its observation version against the environment's kernels module; that imported
    the environment package's env module and through it SB3 and torch (1.5 s, and torch an engine did not
    need), although the README said onnxruntime and numpy were all the runtime needed."""
    path = zoo_onnx[env_id][0]
    code = ("import sys, numpy as np; from agents.onnx_policy import OnnxPolicy; "
            f"p = OnnxPolicy({str(path)!r}, env_id={env_id!r}); "
            "p.act(np.zeros((2, p.n_obs), np.float32), None); "
            "bad = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("env_id", ZOO_IDS)
def test_zoo_parity_and_metadata(zoo_onnx, env_id):
    path, parity = zoo_onnx[env_id]
    assert parity.ok and parity.n_obs == 10_000 and parity.mismatches == 0
    assert parity.max_abs_diff <= X.ATOL
    assert parity.decided > 0.9 * parity.n_obs  # the check is not vacuous
    p = OnnxPolicy(path)
    m = p.metadata
    assert m["env_id"] == env_id and m["env_version"] == "v" + env_id.rsplit("-v", 1)[1]
    assert m["training_command"].startswith(f"python train.py --env {env_id}")
    assert m["opset"] == str(X.OPSET) and json.loads(m["parity"])["ok"]
    # the observation version the zoo file records (agents.obs_version), the one this servegym builds
    assert m["observation_layout"] == env_id
    assert m["observation_version"] == str(envs.observation_version(env_id)[0])
    assert len(p.observation_features) == p.n_obs
    assert len(p.action_meanings) == p.n_scores
    if env_id == KV:
        from envs.kv_admission import kernels as kern

        assert p.observation_features[: len(kern.GLOBAL_FEATURES)] == list(kern.GLOBAL_FEATURES)
        assert p.observation_features[-1] == "cand7.fits_now"
        assert p.action_meanings[0] == "admit=0 budget=512 shortage=preempt order=fcfs"


@pytest.mark.parametrize("algo", ["ppo", "maskable-ppo", "dqn"])
def test_parity_every_algorithm(tiny, tmp_path, algo):
    from agents.sb3_policy import algo_class

    out = tmp_path / "p.onnx"
    parity = X.export(KV, str(tiny[algo]), out, parity_obs=10_000)
    assert parity.ok and parity.n_obs == 10_000 and parity.mismatches == 0
    p = OnnxPolicy(out)
    assert p.metadata["algorithm"] == algo
    assert f"--algo {algo}" in p.metadata["training_command"]  # from run.json
    assert p.metadata["observation_version"] == "2"  # train.py's checkpoint records it, export copies it
    score = p.session.get_outputs()[1].name
    assert score == ("q_values" if algo == "dqn" else "logits")
    # The eager reference the parity check uses is SB3's own decision.
    model = algo_class(algo).load(tiny[algo], device="cpu")
    obs, mask = X.collect_observations(KV, 256, model, seed=3)
    ones = np.ones_like(mask)
    kw = {"action_masks": mask} if algo == "maskable-ppo" else {}
    m = mask if algo == "maskable-ppo" else ones
    sb3, _ = model.predict(obs, deterministic=True, **kw)
    ref, _ = X._reference(model, None, obs, m)
    np.testing.assert_array_equal(sb3, ref)
    np.testing.assert_array_equal(p.act(obs, m), ref)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", sorted(envs.VEC_ENVS))
def test_export_every_environment(tmp_path, env_id):
    """A tiny checkpoint of each environment's default algorithm exports with parity and with
    its names (the VecEnv's feature_names() and action_meanings() must follow its layout)."""
    from agents import train

    with X.torch_one_thread():
        assert train.main(["--env", env_id, "--timesteps", "256", "--n-envs", "2", "--no-eval",
                           "--no-progress", "--out", str(tmp_path)]) == 0
    parity = X.export(env_id, str(tmp_path / "final.zip"), tmp_path / "p.onnx", parity_obs=2000)
    assert parity.ok
    p = OnnxPolicy(tmp_path / "p.onnx")
    assert len(p.observation_features) == p.n_obs and len(p.action_meanings) == p.n_scores


def test_vecnormalize_folded(tiny, tmp_path):
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.sb3_policy import algo_class

    d = tmp_path / "run"
    d.mkdir()
    (d / "final.zip").write_bytes(tiny["ppo"].read_bytes())
    vn = VecNormalize(envs.make_vec(KV, 4, seed=0), norm_reward=False, clip_obs=3.0)
    vn.reset()
    for _ in range(200):
        vn.step(np.zeros(4, np.int64))
    assert np.ptp(vn.obs_rms.var) > 0
    vn.save(str(d / "vecnormalize.pkl"))
    out = tmp_path / "norm.onnx"
    parity = X.export(KV, str(d / "final.zip"), out, parity_obs=2000)
    assert parity.ok
    p = OnnxPolicy(out)
    assert "VecNormalize" in json.loads(p.metadata["observation"])["normalization"]
    model = algo_class("ppo").load(d / "final.zip", device="cpu")
    obs, mask = X.collect_observations(KV, 512, model, seed=5)
    with open(d / "vecnormalize.pkl", "rb") as f:
        stats = pickle.load(f)
    _, ref = X._reference(model, stats, obs, mask)
    _, raw = X._reference(model, None, obs, mask)
    _, got = p.run(obs, mask)
    np.testing.assert_allclose(got, ref, atol=X.ATOL)
    assert np.abs(got - raw).max() > 100 * X.ATOL  # the statistics change the answer


def test_parity_check_catches_a_wrong_graph(tiny, tmp_path):
    from agents.sb3_policy import algo_class

    a = algo_class("ppo").load(tiny["ppo"], device="cpu")
    b = algo_class("maskable-ppo").load(tiny["maskable-ppo"], device="cpu")
    X.export_model(a, tmp_path / "a.onnx")
    obs, mask = X.collect_observations(KV, 500, a, seed=2)
    assert X.check_parity(tmp_path / "a.onnx", a, None, obs, mask).ok
    bad = X.check_parity(tmp_path / "a.onnx", b, None, obs, mask)
    assert not bad.ok and bad.max_abs_diff > X.ATOL


def test_cli_errors_write_nothing(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    for args, says in ((["--policy", "zoo", "--env-kwargs", "candidates=4"], "shape"),
                       (["--policy", str(tmp_path / "missing.zip")], "missing.zip")):
        with pytest.raises(SystemExit) as exit_:
            X.main([*args, "--onnx", str(out)])
        # Progress lines may precede it; the error itself is one line, the last.
        lines = capsys.readouterr().err.strip().splitlines()
        errors = [ln for ln in lines if "error:" in ln]
        assert exit_.value.code == 2 and errors == lines[-1:] and says in errors[0], lines
        assert not out.exists()


def test_a_policy_export_cannot_take_names_zoo_as_allowed(tmp_path, capsys):
    """Was 'allowed: an existing .zip file', although --policy zoo exports the reference agent."""
    with pytest.raises(SystemExit) as exit_:
        X.main(["--env", "Routing", "--policy", "jsq", "--onnx", str(tmp_path / "x.onnx")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "--policy 'jsq': not a policy of servegym/Routing-v0; allowed: zoo or an existing .zip file")


@pytest.mark.parametrize("content", [b"not a pickle at all", b"\x80\x04\x95", b""])
def test_a_vecnormalize_file_that_does_not_unpickle_is_one_line(content, tmp_path, capsys):
    """Was pickle's traceback (UnpicklingError, EOFError) from agents.export --vecnormalize."""
    vn = tmp_path / "vn.pkl"
    vn.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        X.main(["--env", "PrefixEviction", "--policy", "zoo", "--onnx", str(tmp_path / "x.onnx"),
                "--vecnormalize", str(vn), "--no-parity", "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and f"{vn}: not readable as VecNormalize statistics (" in lines[-1], lines
    assert not (tmp_path / "x.onnx").exists()


def test_an_output_name_without_the_onnx_suffix_is_refused(tmp_path, capsys):
    """--onnx x.txt wrote an ONNX model that no --policy reads (policies are told apart by suffix)."""
    for name, got in (("x.txt", "'.txt'"), ("x", "no suffix"), ("x.ONNX", "'.ONNX'")):
        with pytest.raises(SystemExit) as exit_:
            X.main(["--policy", "zoo", "--onnx", str(tmp_path / name), "--no-parity", "--no-progress"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and lines[-1].endswith(
            f"error: --onnx {tmp_path / name}: expected a file name ending in .onnx, got {got}"), lines
        assert not (tmp_path / name).exists()


def test_the_python_api_refuses_an_output_name_without_the_onnx_suffix(tmp_path):
    """export() wrote any suffix (only the CLI refused one); both now go through X.check_onnx_path, before
    any work: nothing is written."""
    for name, got in (("x.txt", "'.txt'"), ("x", "no suffix"), ("x.ONNX", "'.ONNX'")):
        out = tmp_path / name
        with pytest.raises(ValueError, match=rf"^export: out {re.escape(str(out))}: expected a file name ending in "
                                             rf"\.onnx, got {re.escape(got)}$"):
            X.export("servegym/KVAdmission-v0", "zoo", out, parity_obs=0)
        assert not out.exists()
    assert X.check_onnx_path(str(tmp_path / "x.onnx"), "--onnx") == tmp_path / "x.onnx"


def test_export_model_refuses_an_output_name_without_the_onnx_suffix(tmp_path):
    """export_model (the writer under export(), public) wrote x.txt; it goes through check_onnx_path too, before
    the model is read (None here: the check comes first)."""
    for name, got in (("x.txt", "'.txt'"), ("x", "no suffix")):
        out = tmp_path / name
        with pytest.raises(ValueError, match=rf"^export_model: out {re.escape(str(out))}: expected a file name "
                                             rf"ending in \.onnx, got {re.escape(got)}$"):
            X.export_model(None, out)
        assert not out.exists()


def test_an_opset_torch_cannot_write_is_a_usage_error(tmp_path, capsys):
    # was "export failed: Unsupported onnx_opset_version: 0", exit 1: the parity check's failure
    out = tmp_path / "x.onnx"
    for opset, says in (("0", "--opset 0: Unsupported onnx_opset_version: 0"),
                        ("7", "--opset 7: ONNX export failed on where")):
        with pytest.raises(SystemExit) as exit_:
            X.main(["--policy", "zoo", "--onnx", str(out), "--no-parity", "--no-progress", "--opset", opset])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and says in lines[-1], lines
        assert not out.exists()


def _toy_env(action_space: gym.spaces.Space) -> gym.Env:
    """An env outside servegym: 6 features in [-1, 1], random observations, reward 0, never ending."""

    class Toy(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (6,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    Toy.action_space = action_space
    return Toy()


# A toy env outside servegym records no observation version; its warning is expected here.
@pytest.mark.filterwarnings("ignore::agents.obs_version.ObservationVersionUnknown")
def test_multidiscrete_export(tmp_path):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", _toy_env(gym.spaces.MultiDiscrete([3, 4])), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    X.export_model(model, tmp_path / "md.onnx")
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (3000, 6)).astype(np.float32)
    mask = rng.random((3000, 7)) < 0.7
    mask[:, 0] |= ~mask[:, :3].any(1)
    mask[:, 3] |= ~mask[:, 3:].any(1)
    assert X.check_parity(tmp_path / "md.onnx", model, None, obs, mask).ok
    a = OnnxPolicy(tmp_path / "md.onnx").act(obs, mask)
    assert a.shape == (3000, 2)
    assert mask[np.arange(3000), a[:, 0]].all() and mask[np.arange(3000), 3 + a[:, 1]].all()
    sb3, _ = model.predict(obs, deterministic=True)
    onnx_a = OnnxPolicy(tmp_path / "md.onnx").act(obs, None)
    # Same action wherever torch's two best logits of a dimension differ by more than 1e-4 (the
    # issue's parity criterion; float32 graphs may break exact ties differently).
    import torch

    with torch.no_grad():
        dist = model.policy.get_distribution(torch.as_tensor(obs))
    for d, (lo, hi) in enumerate(((0, 3), (3, 7))):
        logits = torch.cat([c.logits for c in dist.distribution], dim=1).numpy()[:, lo:hi]
        top2 = np.sort(logits, axis=1)[:, -2:]
        decided = top2[:, 1] - top2[:, 0] > 1e-4
        assert decided.mean() > 0.95
        np.testing.assert_array_equal(onnx_a[decided, d], sb3[decided, d])


def test_onnx_policy_in_evaluate(zoo_onnx):
    from agents.evaluate import evaluate

    path, _ = zoo_onnx[KV]
    vec = envs.make_vec(KV, 1, seed=0)
    assert isinstance(make_policy(str(path), vec, KV), OnnxPolicy)
    # a PolicyMismatch, which agents.evaluate ends in one line (a plain ValueError was a traceback)
    with pytest.raises(PolicyMismatch, match="exported for"):
        make_policy(str(path), vec, "servegym/Other-v0")
    with pytest.raises(ValueError, match="shape"):
        make_policy(str(path), envs.make_vec(KV, 1, seed=0, candidates=4), KV)
    with X.torch_one_thread():
        rep = evaluate(KV, [str(path), "zoo"], episodes=2, env_kwargs={"load": 1.1}, progress=False)
    a, b = (r["metrics"] for r in rep["results"])
    for k in ("slo_attainment", "goodput_rps", "ttft_p99_s", "return_mean"):
        assert a[k] == b[k], k


# --- GuardedPolicy -------------------------------------------------------------------------
class _Const:
    def __init__(self, action: int, delay_s: float = 0.0, name: str = "const"):
        self.action, self.delay_s, self.name, self.calls = action, delay_s, name, 0

    def act(self, obs, action_mask):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return np.full(obs.shape[0], self.action, np.int64)


class _Raises:
    name = "raises"

    def act(self, obs, action_mask):
        raise RuntimeError("model crashed")


OBS = np.zeros((3, 4), np.float32)
MASK = np.ones((3, 5), bool)


def test_guard_passes_fast_answers():
    g = GuardedPolicy(_Const(2), _Const(0), budget_us=1e6)
    np.testing.assert_array_equal(g.act(OBS, MASK), [2, 2, 2])
    assert g.counters.as_dict() == {"calls": 1, "decisions": 3, "fallbacks": 0, "timeouts": 0,
                                    "busy": 0, "errors": 0, "invalid": 0}


def test_guard_budget_is_enforced_inline():
    slow = _Const(2, delay_s=0.002)  # 2 ms, four times the 500 us budget
    g = GuardedPolicy(slow, _Const(0))
    np.testing.assert_array_equal(g.act(OBS, MASK), [0, 0, 0])
    assert g.counters.timeouts == 1 and g.counters.fallbacks == 3 and slow.calls == 1


def test_guard_hard_deadline_does_not_wait():
    slow = _Const(2, delay_s=0.3)
    g = GuardedPolicy(slow, _Const(0), budget_us=500, hard_deadline=True)
    t = time.perf_counter()
    np.testing.assert_array_equal(g.act(OBS, MASK), [0, 0, 0])
    np.testing.assert_array_equal(g.act(OBS, MASK), [0, 0, 0])  # the late call still runs
    assert time.perf_counter() - t < 0.2
    assert g.counters.timeouts == 1 and g.counters.busy == 1 and g.counters.fallbacks == 6
    time.sleep(0.35)
    fast = GuardedPolicy(_Const(4), _Const(0), budget_us=2e5, hard_deadline=True)
    np.testing.assert_array_equal(fast.act(OBS, MASK), [4, 4, 4])
    g.close()
    fast.close()


def test_guard_errors_and_illegal_actions_fall_back():
    g = GuardedPolicy(_Raises(), _Const(1))
    np.testing.assert_array_equal(g.act(OBS, MASK), [1, 1, 1])
    assert g.counters.errors == 1 and isinstance(g.last_error, RuntimeError)

    class Wrong:
        name = "wrong"

        def act(self, obs, action_mask):
            return np.array([3, 9, 4])  # 9 is out of range, 4 is masked in row 2

    mask = MASK.copy()
    mask[2, 4] = False
    g = GuardedPolicy(Wrong(), _Const(1), budget_us=1e6)
    np.testing.assert_array_equal(g.act(OBS, mask), [3, 1, 1])
    assert g.counters.invalid == 2 and g.counters.fallbacks == 2
    with pytest.raises(ValueError, match="budget_us"):
        GuardedPolicy(_Const(1), _Const(0), budget_us=0)


# --- the reference engine hook ---------------------------------------------------------------
def _hook():
    spec = importlib.util.spec_from_file_location("engine_hook", ROOT / "examples" / "engine_hook.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["engine_hook"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_observer_matches_env_write_obs():
    """An EngineView read off the simulator's state gives the env's own observation and mask."""
    from envs.core import state as S

    hook = _hook()
    vec = envs.make_vec(KV, 1, seed=4, load=2.0)
    vec.reset()
    obs_fn = hook.KVAdmissionObserver(vec.scenario.engine, vec.K, slots=vec.config.queue_slots,
                                    capacity_rps=vec.scenario.capacity_rps)
    rng = np.random.default_rng(0)
    checked = 0
    for step in range(1500):
        mask = vec.action_masks()
        obs, _, done, _ = vec.step(np.array([rng.choice(np.flatnonzero(mask[0]))]))
        if done[0] or step % 25:
            continue
        st, wl, w = vec.state, vec.scenario.workload, vec.state.window[0]
        qs = np.flatnonzero(st.status[0, 0] == S.QUEUED)
        qs = qs[np.argsort(st.seq[0, 0, qs])]
        rs = st.run_list[0, 0, : st.n_running[0, 0]]
        arr = wl.arrival_s[w] * st.time_scale[0]
        view = hook.EngineView(
            float(st.clock[0]), arr[st.req[0, 0, qs]], wl.prompt[w, st.req[0, 0, qs]],
            st.target[0, 0, qs], st.generated[0, 0, qs], wl.pred_bucket[w, st.req[0, 0, qs]],
            wl.prompt[w, st.req[0, 0, rs]], st.target[0, 0, rs], st.kv_tokens[0, 0, rs],
            st.generated[0, 0, rs], int(st.free_blocks[0, 0]), *st.accum[0, [
                S.A_TTFT_EMA, S.A_GAP_EMA, S.A_LAST_ITER_S, S.A_RECOMPUTE_EMA]],
            st.out_hist[0].copy(), progress=0.0)
        got, got_mask = obs_fn.build(view)
        arrived = list(hook.kern.GLOBAL_FEATURES).index("arrived")
        want = obs.copy()
        want[0, arrived] = 0.0  # episode progress: no engine analogue (the view holds it fixed)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_mask, vec.action_masks())
        checked += len(qs) > vec.K and len(rs) > 0
    assert checked >= 10  # states with a long queue and a running batch were compared


def test_engine_hook_serves_every_request(zoo_onnx):
    hook = _hook()
    res = hook.run(zoo_onnx[KV][0], requests=150, rate=10.0, budget_us=1e6)
    assert res["finished"] == 150
    assert res["guard_calls"] == res["iterations"] and res["guard_fallbacks"] == 0
    assert 0 < res["ttft_p50_s"] <= res["ttft_p99_s"]
    assert res["observation_version"] == hook.KVAdmissionObserver.OBS_VERSION == 2  # read from the export


def test_engine_hook_refuses_a_model_of_another_observation_version(zoo_onnx, tmp_path, capsys):
    import onnx

    hook = _hook()
    proto = onnx.load(str(zoo_onnx[KV][0]))
    X.set_metadata(proto, {"observation_version": "1"})
    onnx.save(proto, str(tmp_path / "old.onnx"))
    with pytest.raises(SystemExit) as exc:
        hook.main(["--onnx", str(tmp_path / "old.onnx"), "--requests", "10"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "old.onnx: trained on servegym/KVAdmission-v0 observation v1 " in err and err.endswith("; retrain")


def test_bench_time_calls():
    from agents.bench_policy import time_calls

    us = time_calls(lambda o, m: o.sum(), np.zeros((10, 3)), np.ones((10, 2), bool), 4, 50, warmup=5)
    assert us.shape == (50,) and (us > 0).all()


def test_bench_policy_default_run_benchmarks_only_single_checkpoint_zoo_agents(monkeypatch, capsys):
    """`python -m agents.bench_policy` (the README's command) benchmarked every zoo entry, the multi-agent
    cluster's team among them, whose export raised a ValueError traceback after the others had run;
    `--env multi` is one line, exit 2."""
    import agents.bench_policy as B

    played = []

    def fake_bench(env_id, batches, calls, seed):
        X.resolve_source(env_id, "zoo")  # what the real one does first: raised for the team
        played.append(env_id)
        return []

    monkeypatch.setattr(B, "bench_env", fake_bench)
    monkeypatch.setattr(B.os, "sched_setaffinity", lambda pid, cpus: None)
    assert B.main(["--calls", "1"]) == 0
    assert played and "servegym/MultiCluster-v0" not in played
    assert "servegym/Routing-v0" in played and "servegym/KVAdmission-v0" in played
    with pytest.raises(SystemExit) as exc:
        B.main(["--env", "multi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].endswith("reads Routing-v0's observation; benchmark Routing-v0's zoo router with "
                           "--env servegym/Routing-v0"), err


def test_the_multi_agent_zoo_team_names_its_router_seat_to_export():
    multi = "servegym/MultiCluster-v0"
    with pytest.raises(ValueError, match="export it with --env servegym/Routing-v0 --policy .*multi_router_dagger.zip"):
        X.resolve_source(multi, "zoo")


@pytest.mark.parametrize("capacity", [0.0, -1.0, float("nan"), float("inf"), None, "8", True, [1.0, 2.0]])
def test_observer_rejects_a_bad_capacity(capacity):
    hook = _hook()
    with pytest.raises(ValueError, match="capacity_rps must be a positive number of requests/s"):
        hook.KVAdmissionObserver(EngineSpec().build(), capacity_rps=capacity)


def test_an_onnx_path_that_is_a_folder_or_under_a_file_is_one_line(tmp_path):
    from agents.export import check_onnx_path

    (tmp_path / "d.onnx").mkdir()
    (tmp_path / "afile").write_text("")
    for path, what in ((tmp_path / "d.onnx", "exists and is a directory"), (tmp_path / "afile" / "e.onnx", "afile is not a directory"),
                       (tmp_path / ".onnx", "expected a name before .onnx")):
        with pytest.raises(ValueError, match=what):
            check_onnx_path(path, "export: out")
    assert check_onnx_path(tmp_path / "new" / "p.onnx", "--onnx") == tmp_path / "new" / "p.onnx"


@pytest.fixture(scope="module")
def toy_onnx(tmp_path_factory) -> dict[str, Path]:
    """Exports of two toy PPO policies outside servegym (6 features): Discrete(5) and MultiDiscrete([3, 4])."""
    import warnings

    from stable_baselines3 import PPO

    from agents.obs_version import ObservationVersionUnknown

    out = {}
    for name, space in (("discrete", gym.spaces.Discrete(5)), ("multi", gym.spaces.MultiDiscrete([3, 4]))):
        model = PPO("MlpPolicy", _toy_env(space), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
        path = tmp_path_factory.mktemp(name) / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ObservationVersionUnknown)
            X.export_model(model, path)
        out[name] = path
    return out


@pytest.mark.filterwarnings("ignore::agents.obs_version.ObservationVersionUnknown")
@pytest.mark.parametrize("name, obs, mask, says", [
    # each was a silent action: NaN/inf observations and an all-False row gave action 0, a mask of 0.5, 2 or NaN
    # counted as legal, a complex observation lost its imaginary part, None in an object array became NaN
    ("discrete", np.array([[0, 0, np.nan, 0, 0, 0]]), None, "obs[0, 2] is nan (as float32): observations must be finite"),
    ("discrete", np.array([[0, 0, 0, 0, 0, 1e39]]), None, "obs[0, 5] is inf (as float32)"),  # beyond float32
    ("discrete", np.zeros((1, 6), complex), None, "obs: dtype complex128, expected real numbers (float32)"),
    ("discrete", np.array([[None] * 6]), None, "obs: dtype object, expected real numbers"),
    ("discrete", np.array([["a"] * 6]), None, "obs: dtype <U1, expected real numbers"),  # was numpy's own message
    ("discrete", np.zeros((2, 6)), np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], bool),
     "action_mask row 1: no legal action; a row needs at least one True"),
    ("discrete", np.zeros((1, 6)), np.full((1, 5), 0.5), "action_mask[0, 0] is np.float64(0.5) (float64): expected "
                                                         "booleans or 0/1"),
    ("discrete", np.zeros((1, 6)), np.array([[1, 2, 1, 1, 1]]), "action_mask[0, 1] is np.int64(2)"),
    ("discrete", np.zeros((1, 6)), np.array([[1, np.nan, 1, 1, 1]]), "action_mask[0, 1] is np.float64(nan)"),
    ("discrete", np.zeros((1, 6)), np.array([["1"] * 5]), "action_mask[0, 0] is np.str_('1') (<U1)"),
    ("multi", np.zeros((2, 6)), np.array([[1, 0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0]], bool),
     "action_mask row 1: no legal action in action component 1 (columns 3..6); each component needs a True"),
])
def test_onnx_policy_refuses_bad_inputs_naming_where(toy_onnx, name, obs, mask, says):
    p = OnnxPolicy(toy_onnx[name])
    for call in (p.act, p.run):
        with pytest.raises(ValueError) as err:
            call(obs, mask)
        assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.filterwarnings("ignore::agents.obs_version.ObservationVersionUnknown")
def test_onnx_policy_takes_0_1_masks_and_empty_batches(toy_onnx):
    p, m = OnnxPolicy(toy_onnx["discrete"]), OnnxPolicy(toy_onnx["multi"])
    obs = np.random.default_rng(0).uniform(-1, 1, (50, 6))
    mask = np.random.default_rng(1).random((50, 5)) < 0.5
    mask[:, 0] = True
    np.testing.assert_array_equal(p.act(obs, mask.astype(np.uint8)), p.act(obs, mask))  # 0/1 masks read as booleans
    np.testing.assert_array_equal(p.act(obs, mask.astype(np.float64)), p.act(obs, mask))
    # a batch of 0 rows was onnxruntime's Reshape failure (a multi-line [ONNXRuntimeError])
    for pol, shape in ((p, (0,)), (m, (0, 2))):
        a, s = pol.run(np.zeros((0, 6)), None)
        assert a.shape == shape and a.dtype == np.int64 and s.shape == (0, pol.n_scores)
        assert pol.act(np.zeros((0, 6)), np.zeros((0, pol.n_scores), bool)).shape == shape


@pytest.mark.filterwarnings("ignore::agents.obs_version.ObservationVersionUnknown")
def test_guard_falls_back_on_a_nan_observation(toy_onnx):
    """A NaN observation was decided by the learned policy (action 0); now it raises inside the guard, whose
    fallback decides and counts an error."""
    from agents.policy_base import RandomPolicy

    class Five:
        action_space = gym.spaces.Discrete(5)

    g = GuardedPolicy(OnnxPolicy(toy_onnx["discrete"]), RandomPolicy(Five(), seed=0), budget_us=1e6)
    obs = np.zeros((1, 6))
    obs[0, 3] = np.nan
    g.act(obs, np.array([[False, False, True, False, False]]))
    assert g.counters.errors == 1 and g.counters.fallbacks == 1


@pytest.mark.parametrize("budget", [float("inf"), float("nan"), 0, -5, "500", True])
def test_guard_refuses_a_budget_that_is_not_a_finite_positive_number(budget):
    """inf was int()'s OverflowError, '500' a TypeError from '>', True a budget of 1 us."""
    from agents.policy_base import RandomPolicy

    class Five:
        action_space = gym.spaces.Discrete(5)

    with pytest.raises(ValueError, match="budget_us must be a finite number > 0"):
        GuardedPolicy(RandomPolicy(Five()), RandomPolicy(Five()), budget_us=budget)
    GuardedPolicy(RandomPolicy(Five()), RandomPolicy(Five()), budget_us=np.float32(250))  # numpy numbers are numbers


def _argmax_model(path: Path, obs_shape: list, mask_shape: list, action_shape: list) -> Path:
    """A model with agents.export's input and output names (action = argmax of the mask) and the given shapes."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Cast", ["action_mask"], ["logits"], to=TensorProto.FLOAT),
         helper.make_node("ArgMax", ["logits"], ["action"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, obs_shape),
         helper.make_tensor_value_info("action_mask", TensorProto.BOOL, mask_shape)],
        [helper.make_tensor_value_info("action", TensorProto.INT64, action_shape),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, mask_shape)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.filterwarnings("ignore::agents.obs_version.ObservationVersionUnknown")
@pytest.mark.parametrize("obs_shape", [["batch", "n"], ["n"]])
def test_onnx_policy_names_a_model_whose_input_shapes_are_not_an_exports(obs_shape, tmp_path):
    """A symbolic feature count was int()'s ValueError, a rank-1 input an IndexError, neither naming the file."""
    from agents.policy_base import PolicyFileError

    path = _argmax_model(tmp_path / "m.onnx", obs_shape, ["batch", 4], ["batch"])
    with pytest.raises(PolicyFileError, match=rf"^{re.escape(str(path))}: inputs of shapes .*expected \[batch, n_obs\]"):
        OnnxPolicy(path)
    ok = OnnxPolicy(_argmax_model(tmp_path / "ok.onnx", ["batch", 3], ["batch", 4], ["batch"]))
    assert ok.act(np.zeros((2, 3)), np.array([[0, 0, 1, 0], [0, 1, 0, 0]], bool)).tolist() == [2, 1]
    # was 'exported for None, not servegym/KVAdmission-v0'
    with pytest.raises(PolicyMismatch, match=r"ok.onnx: records no env_id in its metadata \(not written by "
                                             r"agents.export\), so it cannot be checked against servegym/KVAdmission"):
        OnnxPolicy(tmp_path / "ok.onnx", env_id="KVAdmission")


@pytest.mark.filterwarnings("ignore::agents.obs_version.ObservationVersionUnknown")
@pytest.mark.parametrize("name", ["discrete", "multi"])
def test_the_graph_refuses_a_mask_whose_rows_are_not_the_observations(toy_onnx, name):
    """An engine calling the exported graph with onnxruntime alone (no OnnxPolicy): a [1, n] mask beside two
    observations was broadcast over both rows, and one observation beside a [2, n] mask gave two actions, silently;
    now onnxruntime fails in the node named for it. Matching rows decide as before."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(toy_onnx[name]), providers=["CPUExecutionProvider"])
    n = session.get_inputs()[1].shape[1]
    obs = np.random.default_rng(0).uniform(-1, 1, (2, 6)).astype(np.float32)
    for b_obs, b_mask in ((2, 1), (1, 2), (2, 3)):
        with pytest.raises(Exception, match=X.MASK_ROWS_NODE):
            session.run(None, {"obs": obs[:1] if b_obs == 1 else obs, "action_mask": np.ones((b_mask, n), bool)})
    action, scores = session.run(None, {"obs": obs, "action_mask": np.ones((2, n), bool)})
    assert action.shape[0] == 2 and scores.shape == (2, n)
    np.testing.assert_array_equal(action, OnnxPolicy(toy_onnx[name]).act(obs, None))
