"""agents.evaluate and train.py end to end, plus a fast check that PPO really learns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.cli import UsageError, parse_env_kwargs
from agents.evaluate import evaluate, main as evaluate_main, report_json
from envs.kv_admission import env as kva

ENV = kva.ENV_ID


def test_parse_env_kwargs_literals_and_errors():
    kw = parse_env_kwargs(["load=1", "gpu=H100", "prefix_caching=true", "rate_scale=none"], ENV)
    assert kw == {"load": 1.0, "gpu": "H100", "prefix_caching": True, "rate_scale": None}
    assert isinstance(kw["load"], float)
    assert parse_env_kwargs(["load=(0.7,0.9)"], ENV) == parse_env_kwargs(["load=0.7,0.9"], ENV) \
        == {"load": (0.7, 0.9)}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_env_kwargs(["load"], ENV)


def test_evaluate_cli_writes_design_json(tmp_path):
    out = tmp_path / "eval.json"
    rc = evaluate_main(["--env", ENV, "--trace", "default", "--policy", "vllm_fcfs", "--policy", "random",
                        "--episodes", "2", "--seed", "3", "--env-kwargs", "load=1.1", "window_requests=64",
                        "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["env"] == ENV and rep["trace"] == "default" and rep["seed"] == 3
    assert [r["policy"] for r in rep["results"]] == ["vllm_fcfs", "random"]
    for r in rep["results"]:
        for k in ("slo_attainment", "goodput_rps", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "tbt_p99_s",
                  "e2e_p99_s", "throughput_tok_s", "preemptions", "return_mean"):
            assert k in r["metrics"], k
        assert 0.0 <= r["metrics"]["slo_attainment"] <= 1.0
    assert rep["distinct_windows"] == 2 and "note" not in rep  # 2 episodes, 2 of the held-out windows


def _small_trace(path, n: int, seed: int = 0):
    """A Mooncake-format trace of ``n`` requests, 0.5 s apart, varied lengths."""
    rng = np.random.default_rng(seed)
    lines, block = [], 0
    for i in range(n):
        prompt = int(rng.integers(200, 2000))
        blocks = -(-prompt // 512)  # Mooncake's 512-token blocks, none shared
        lines.append(json.dumps({"timestamp": 500 * i, "input_length": prompt,
                                 "output_length": int(rng.integers(20, 300)),
                                 "hash_ids": list(range(block, block + blocks))}) + "\n")
        block += blocks
    path.write_text("".join(lines))
    return path


def test_more_episodes_than_windows_says_so_on_stderr_and_in_the_json(tmp_path, capsys):
    # issue 21: a held-out part with one window replayed three times is one sample; --episodes 5 on a
    # split of 3 windows replayed windows 0 and 1 without a word
    trace = _small_trace(tmp_path / "small.jsonl", 150)
    out = tmp_path / "eval.json"
    rc = evaluate_main(["--env", ENV, "--trace", str(trace), "--policy", "vllm_fcfs", "--episodes", "5",
                        "--split", "all", "--env-kwargs", "load=1.1", "window_requests=50", "--json", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["episodes"] == 5 and rep["distinct_windows"] == 3
    assert rep["note"] == ("5 episodes replay 3 distinct whole-trace window(s): 3 independent sample(s), not 5")
    captured = capsys.readouterr()
    assert f"warning: {ENV} split=all: {rep['note']}" in captured.err.splitlines()
    assert "episodes=5 (3 distinct windows)" in captured.out


def test_report_json_is_strict_json():
    # A metric with no value (NaN: no request decoded twice) is null, never the non-standard NaN token.
    rep = {"metrics": {"tpot_p99_s": float("nan"), "cost": np.float32(1.5), "n": np.int64(3), "inf": np.inf},
           "arr": np.array([1.0, np.nan]), "ok": np.bool_(True), "names": ("a", "b")}
    text = report_json(rep)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"metrics": {"tpot_p99_s": None, "cost": 1.5, "n": 3, "inf": None},
                                "arr": [1.0, None], "ok": True, "names": ["a", "b"]}
    with pytest.raises(TypeError, match="report_json: cannot write object"):
        report_json({"x": object()})


def test_evaluation_is_deterministic_and_same_scenarios_for_every_policy():
    kw = {"load": 0.9, "window_requests": 64}
    a = evaluate(ENV, ["vllm_fcfs"], "default", 2, 0, kw, progress=False)
    b = evaluate(ENV, ["vllm_fcfs"], "default", 2, 0, kw, progress=False)
    assert a["results"][0]["metrics"]["slo_attainment"] == b["results"][0]["metrics"]["slo_attainment"]
    assert a["results"][0]["metrics"]["ttft_p99_s"] == b["results"][0]["metrics"]["ttft_p99_s"]


def test_train_py_runs_checkpoints_resumes_and_evaluates(tmp_path, capsys):
    from agents import train

    tmp_path = tmp_path / "run 1"  # a space: the recorded command must quote it

    args = ["--timesteps", "512", "--n-envs", "2", "--algo", "ppo", "--out", str(tmp_path),
            "--env-kwargs", "window_requests=64", "--eval-episodes", "1", "--eval-load", "1.1",
            "--no-progress", "--save-every", "256"]
    assert train.main(args) == 0
    assert (tmp_path / "final.zip").exists() and (tmp_path / "checkpoint.zip").exists()
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))
    rep = json.loads((tmp_path / "eval.json").read_text())
    assert {r["policy"] for r in rep["results"]} >= {"vllm_fcfs", "sarathi", "random"}
    out = capsys.readouterr().out
    assert "vllm_fcfs" in out and "slo_attainment" in out
    assert train.main([*args[:1], "1024", *args[2:], "--resume", "--no-eval"]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["timesteps"] >= 1024
    # the recorded command pastes back into a shell (shlex-quoted), arguments and all
    import shlex
    assert shlex.split(run["command"]) == ["python", "train.py", *args[:1], "1024", *args[2:], "--resume", "--no-eval"]


def test_fast_ppo_beats_random():
    """A short MaskablePPO run already beats uniform random on held-out windows."""
    from agents.training import make_model

    # The p99-gap check, where the prefill budget decides most outcomes (random: ~0.05 at load 1.1);
    # under the TPOT check random admission already meets ~0.92 there (README), too little to learn
    # in 16k steps.
    kw = dict(window_requests=128, load=1.1, drain_s=20.0, slo_metric="p99_tbt")
    # 16 envs x the default 64 steps: one 1,024-step minibatch per epoch (with 8 envs the 4 epochs of the
    # [64, 64] default made 4 gradient steps per rollout: 0.449 against random's 0.535 after 16k steps)
    vec = kva.KVAdmissionVecEnv(16, seed=0, split="train", **kw)
    model = make_model("maskable-ppo", ENV, vec, seed=0, tensorboard_log=None)
    model.learn(16_384)
    from agents.rollout import run_episodes
    from agents.policy import RandomPolicy

    class Learned:
        name = "learned"

        def act(self, obs, mask):
            a, _ = model.predict(obs, deterministic=True, action_masks=mask)
            return a

    def score(policy):
        test = kva.KVAdmissionVecEnv(4, seed=100, split="test", window_order="sequential", **kw)
        eps, _ = run_episodes(test, policy)
        return np.mean([e["slo_attainment"] for e in eps])

    test_env = kva.KVAdmissionVecEnv(1, seed=0, split="test", **kw)
    learned, rand = score(Learned()), score(RandomPolicy(test_env, seed=0))
    assert learned > rand + 0.05, (learned, rand)


def test_zoo_agent_beats_reservation_admission_at_overload():
    """The committed reference agent, on held-out windows at load 1.3 under MLPerf's TTFT + TPOT
    SLO (fast: 2 episodes): clearly above reserving max_tokens for every request (conservative,
    0.47 at 4 episodes against the agent's 0.66; vllm_fcfs 0.67, sjf 0.82: README)."""
    rep = evaluate(ENV, ["zoo", "conservative"], "default", 2, 0, {"load": 1.3}, progress=False)
    zoo, cons = (r["metrics"] for r in rep["results"])
    assert zoo["slo_attainment"] > cons["slo_attainment"] + 0.1, (zoo, cons)
    assert rep["slo"] == {"metric": "tpot", "ttft_s": 2.0, "tpot_s": 0.1}


def test_default_train_py_run_beats_vllm_fcfs_on_goodput_at_load_1_1(tmp_path):
    """The README's main job: `python train.py` with every default (DAgger, 8,192 decisions: about 20 s of
    training on one core, so it runs by default; seed 0 scores 0.945 against vllm_fcfs' 0.929, README)."""
    from agents import train

    assert train.main(["--out", str(tmp_path), "--no-progress", "--eval-load", "1.1"]) == 0
    rep = json.loads((tmp_path / "eval.json").read_text())
    by = {r["policy"]: r["metrics"] for r in rep["results"]}
    learned = by[str(tmp_path / "final.zip")]
    assert learned["goodput_rps"] > by["vllm_fcfs"]["goodput_rps"]
    assert learned["slo_attainment"] > by["vllm_fcfs"]["slo_attainment"]
    assert json.loads((tmp_path / "run.json").read_text())["imitate"] == 8192


@pytest.mark.parametrize("algo", ["dqn", "maskable-ppo"])
def test_train_py_other_algorithms_produce_loadable_policies(tmp_path, algo):
    from agents import train
    from agents.policy import make_policy

    assert train.main(["--algo", algo, "--timesteps", "600", "--n-envs", "2", "--out", str(tmp_path),
                       "--env-kwargs", "window_requests=64", "--no-eval", "--no-progress"]) == 0
    vec = kva.KVAdmissionVecEnv(2, seed=0, window_requests=64)
    pol = make_policy(str(tmp_path / "final.zip"), vec, ENV)
    assert pol.algo == algo
    obs = vec.reset()
    a = pol.act(obs, vec.action_masks())
    assert a.shape == (2,) and ((0 <= a) & (a < kva.N_ACTIONS)).all()
