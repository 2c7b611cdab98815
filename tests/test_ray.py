"""Ray sweeps and the Ray leaderboard on an embedded 2-CPU Ray (issue 18).

One Ray instance serves the whole module (starting one takes ~15 s here). The 2-node cluster
test is in tests/test_ray_cluster.py. Trials train for a few hundred steps only: these tests
check the plumbing (scheduling, records, failures, resume, byte equality), not learning.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from agents import leaderboard, sweep  # noqa: E402
from agents.sweep_report import seed_ci, summarize  # noqa: E402
from agents.sweep_space import load_space, parse_space, train_argv  # noqa: E402
from agents.zoo import load_recipe  # noqa: E402

ENV = "servegym/KVAdmission-v0"
TINY = ["--timesteps", "256", "--n-envs", "2", "--env-kwargs", "window_requests=64"]


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    from agents.ray_cluster import connect

    connect(None, num_cpus=2)  # the embedded Ray every command starts, on 2 CPUs
    yield
    ray.shutdown()


def sweep_args(out, *extra: str, seeds: str = "0-1") -> list[str]:
    return ["--env", ENV, "--algo", "ppo", "--seeds", seeds, "--eval-episodes", "1",
            "--out", str(out), *extra, "--", *TINY]


# --- pure parts (no Ray needed) ----------------------------------------------------------------

def test_parse_seeds_ranges_lists_and_errors():
    assert sweep.parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert sweep.parse_seeds("3,0-1,3") == (3, 0, 1)
    for bad in ("a", "4-2", "-1", "1-"):
        with pytest.raises(ValueError, match="--seeds"):
            sweep.parse_seeds(bad)


def test_space_file_grid_sample_and_errors(tmp_path):
    f = tmp_path / "space.toml"
    f.write_text('[learning_rate]\ngrid = [1e-4, 3e-4]\n[env.load]\nchoice = [0.9, 1.1]\n'
                 '["policy_kwargs.net_arch"]\nchoice = [[64, 64], [128, 128]]\n')
    space = load_space(f)
    assert space.names == ["learning_rate", "env.load", "policy_kwargs.net_arch"]
    grid = space.grid()
    assert len(grid) == 8 and grid[0] == {"learning_rate": 1e-4, "env.load": 0.9,
                                          "policy_kwargs.net_arch": [64, 64]}
    # Optuna sees indices for list-valued choices; decode maps them back.
    assert space.decode({"policy_kwargs.net_arch": 1}) == {"policy_kwargs.net_arch": [128, 128]}
    domains = space.tune_domains()
    assert domains["learning_rate"].categories == [1e-4, 3e-4]
    assert domains["policy_kwargs.net_arch"].categories == [0, 1]
    cont = parse_space({"learning_rate": {"loguniform": [1e-5, 1e-3]}, "n_epochs": {"randint": [1, 4]}})
    a, b = cont.sample(5, seed=7), cont.sample(5, seed=7)
    assert a == b and all(1e-5 <= c["learning_rate"] <= 1e-3 and 1 <= c["n_epochs"] < 4 for c in a)
    with pytest.raises(ValueError, match="'learning_rate'.*grid or choice"):
        cont.grid()
    with pytest.raises(ValueError, match="'lr': expected exactly one of"):
        parse_space({"lr": {"uniform": [0, 1], "grid": [1]}})
    with pytest.raises(ValueError, match="low < high"):
        parse_space({"lr": {"uniform": [1, 0]}})
    with pytest.raises(ValueError, match="train.\\* options"):
        parse_space({"train.batch": {"grid": [1]}})


def test_space_file_values_are_checked_before_any_trial(tmp_path, capsys):
    """A space whose values train.py refuses is one line before Ray starts (was: the sweep ran, each trial
    failed with the same error, exit 0); --env takes a short name (was 'unknown'); a name given twice, an
    infinite range, a TOML date and a randint beyond int64 are refused when the file is read (were: one
    silently dropped, numpy's OverflowError in sampling, a TypeError when the spec was written as JSON)."""
    from agents.sweep_space import check_values

    cases = {
        "gamma.toml": ("[gamma]\ngrid = [0.99, 2.0]\n", "parameter 'gamma': 2.0: expected a number in [0, 1]"),
        "n.toml": ("[n_steps]\nrandint = [0, 64]\n", "parameter 'n_steps': 0: expected an integer >= 1"),
        "env.toml": ('["env.nope"]\ngrid = [1]\n', "servegym/Routing-v0 has no --env-kwargs key 'nope'"),
        "train.toml": ('["train.n_envs"]\ngrid = [0]\n', "parameter 'train.n_envs': 0: expected an integer >= 1"),
        "inf.toml": ("[learning_rate]\nuniform = [1e-5, inf]\n", "uniform values must be finite numbers"),
        "date.toml": ("[x]\ngrid = [1979-05-27]\n", "grid values must be finite numbers"),
        "big.toml": ("[n_steps]\nrandint = [1, 100000000000000000000]\n", "must fit in a 64-bit integer"),
        "dup.toml": ('["policy_kwargs.net_arch"]\ngrid = [[64]]\n[policy_kwargs.net_arch]\ngrid = [[128]]\n',
                     "parameter 'policy_kwargs.net_arch' is given twice"),
    }
    for name, (text, named) in cases.items():
        f = tmp_path / name
        f.write_text(text)
        out = tmp_path / f"out_{name}"
        with pytest.raises(SystemExit) as exc:
            sweep.main(["--env", "Routing", "--space", str(f), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and named in err[-1] and str(f) in err[-1], (name, err)
        assert not out.exists(), name  # nothing written, no Ray started
    ok = parse_space({"gamma": {"uniform": [0.9, 1.0]}, "env.load": {"grid": [0.9]}, "train.imitate": {"grid": [0]},
                      "policy_kwargs.net_arch": {"choice": [[64, 64]]}})
    check_values(ok, "servegym/Routing-v0")  # in range at both bounds, a known key: no error


@pytest.mark.parametrize("args, says", [
    (["--num-cpus", "0"], "--num-cpus 0: must be >= 1"),  # wrote the spec first: the rerun was 'a sweep is already there'
    (["--eval-seed", "-1"], "--eval-seed -1: must be >= 0"),  # every trial failed after its training
    (["--search", "random", "--search-seed", "-1"], "--search-seed -1: must be >= 0"),  # numpy's traceback
    (["--samples", "20"], "--samples 20: only with --search random or optuna"),  # a grid ignored them
    (["--search-seed", "3"], "--search-seed 3: only with --search random or optuna"),
    (["--num-cpus", "2", "--address", "auto"], "--num-cpus sizes the embedded Ray only"),
])
def test_sweep_options_are_checked_before_anything_is_written(args, says, tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text("[learning_rate]\nuniform = [1e-5, 1e-3]\n")
    out = tmp_path / "out"
    if "random" in args:
        args = [*args, "--space", str(space)]
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--env", "Routing", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and says in err[-1], err
    assert not out.exists()


@pytest.mark.parametrize("args, mode", [
    ([], "max"),  # Routing's main metric, higher is better
    (["--metric", "ttft_p99_s", "--lower-is-better"], "min"),  # was "max": the sweep sought the worst tail
    (["--metric", "goodput_rps"], "max"),
])
def test_sweep_direction_follows_the_metric(args, mode, tmp_path, monkeypatch):
    class Stop(Exception):
        pass

    def capture(spec, **_):
        raise Stop(spec)

    monkeypatch.setattr(sweep, "run_sweep", capture)
    with pytest.raises(Stop) as got:
        sweep.main(["--env", "Routing", *args, "--out", str(tmp_path / "out")])
    assert got.value.args[0].mode == mode


@pytest.mark.parametrize("args, says", [
    (["--lower-is-better"], "--lower-is-better: only with --metric"),
    (["--metric", "slo_attainment_bounded", "--lower-is-better"], "is servegym/Routing-v0's main metric"),
])
def test_lower_is_better_needs_another_metric(args, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--env", "Routing", *args, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and says in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


SMALL_ROUTING = ["--", "--env-kwargs", "window_requests=32", "replicas=2"]


def test_an_unknown_metric_is_refused_before_ray_starts_naming_the_evaluations(tmp_path, capsys, monkeypatch):
    # --metric nope started Ray and every trial: each trained, then its evaluation raised a KeyError. Now one line
    # before anything is written, listing what the trials' held-out evaluation reports.
    from agents.evaluate import evaluate

    ran = []
    monkeypatch.setattr(sweep, "run_sweep", lambda spec, **_: ran.append(spec))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--env", "Routing", "--metric", "nope", "--out", str(out), *SMALL_ROUTING])
    err = capsys.readouterr().err.strip().splitlines()
    report = evaluate("servegym/Routing-v0", ["random"], "default", 1, 10_000, {"window_requests": 32, "replicas": 2},
                      "test", progress=False)
    names = ", ".join(sorted(report["results"][0]["metrics"]))
    assert exc.value.code == 2 and err[-1].endswith(f"error: --metric nope: not among the evaluation's metrics "
                                                    f"({names})"), err
    assert "ttft_p99_s" in names and not ran and not out.exists()


@pytest.mark.parametrize("extra, accepted", [
    (["--trace", "mooncake_conv", "--env-kwargs", "window_requests=32", "prefix_caching=True"], True),
    (["--trace", "mooncake_conv", "--env-kwargs", "window_requests=32"], False),  # no prefix cache, no hit ratio
])
def test_a_metric_only_played_episodes_report_is_looked_for_in_them(extra, accepted, tmp_path, capsys, monkeypatch):
    # KVAdmission reports block_hit_ratio once its prefix cache was looked up: not at reset, yet a trial reports it
    class Stop(Exception):
        pass

    ran = []

    def capture(spec, **_):
        ran.append(spec)
        raise Stop

    monkeypatch.setattr(sweep, "run_sweep", capture)
    args = ["--env", "KVAdmission", "--metric", "block_hit_ratio", "--out", str(tmp_path / "out"), "--", *extra]
    if accepted:
        with pytest.raises(Stop):
            sweep.main(args)
        assert [s.metric for s in ran] == ["block_hit_ratio"]
    else:
        with pytest.raises(SystemExit) as exc:
            sweep.main(args)
        assert exc.value.code == 2 and not ran
    err = capsys.readouterr().err.strip().splitlines()
    assert "not among the metrics every episode of servegym/KVAdmission-v0 reports; playing one" in err[0], err


@pytest.mark.parametrize("args, named", [
    (["--env", "Routing"], "--env would be ignored"),
    (["--seeds", "0-4", "--samples", "3"], "--seeds, --samples would be ignored"),
    (["--", "--timesteps", "64"], "-- --timesteps 64 would be ignored"),
])
def test_resume_refuses_options_it_would_ignore(args, named, tmp_path, capsys):
    """--resume read everything from the recorded spec and dropped these without a word."""
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--resume", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "--resume continues the sweep as" in err[-1] and named in err[-1], err


def test_train_argv_merges_with_recipe_arguments():
    base = ["--trace", "t.jsonl", "--env-kwargs", "load=(0.6,0.8)", "window_requests=64", "--timesteps", "9"]
    argv = train_argv({"env.load": 1.1, "learning_rate": 3e-4, "policy_kwargs.net_arch": [64, 64],
                       "train.n_envs": 4}, base)
    assert argv == ["--trace", "t.jsonl", "--timesteps", "9", "--n-envs", "4",
                    "--env-kwargs", "load=1.1", "window_requests=64",
                    "--hyperparams", "learning_rate=0.0003", "policy_kwargs.net_arch=[64, 64]"]


def test_train_argv_keeps_imitate_kwargs_only_while_imitating():
    # train.py refuses --imitate-kwargs without --imitate: a configuration that sets imitate to 0 on a
    # DAgger recipe drops them; any other keeps them (placed before --env-kwargs).
    base = ["--imitate", "100", "--imitate-kwargs", "epochs=10", "batch_size=512", "--seed", "0"]
    assert train_argv({"train.imitate": 0}, base) == ["--imitate", "100", "--seed", "0", "--imitate", "0"]
    assert train_argv({"train.imitate": 50}, base) == [
        "--imitate", "100", "--seed", "0", "--imitate", "50", "--imitate-kwargs", "epochs=10", "batch_size=512"]
    assert train_argv({}, base) == ["--imitate", "100", "--seed", "0", "--imitate-kwargs", "epochs=10", "batch_size=512"]


def test_seed_ci_is_the_t_interval_and_summary_picks_the_best_complete_config():
    s = seed_ci([1.0, 2.0, 3.0])
    # mean 2, s = 1, t(0.975, 2) = 4.302652729911275 (scipy.stats.t.ppf), half = 4.3027 / sqrt(3)
    assert s["mean"] == 2.0 and s["n"] == 3
    assert s["ci95"] == pytest.approx([2 - 2.4841377118, 2 + 2.4841377118])
    assert seed_ci([0.5])["ci95"] is None
    trials = [
        {"trial_id": "a", "config": {"x": 1}, "seed": 0, "status": "ok", "metric": 0.9},
        {"trial_id": "b", "config": {"x": 1}, "seed": 1, "status": "error", "metric": None},
        {"trial_id": "c", "config": {"x": 2}, "seed": 0, "status": "ok", "metric": 0.5},
        {"trial_id": "d", "config": {"x": 2}, "seed": 1, "status": "ok", "metric": 0.7},
    ]
    summ = summarize(trials, "m", "max")
    assert [c["failed"] for c in summ["configs"]] == [[1], []]
    assert summ["best_config_id"] == 1  # x=1 has the higher mean but lost a seed


def test_zoo_recipe_arguments_without_the_seed_and_reserved_options_refused():
    from agents.zoo import RECIPES

    base = sweep._base_args("servegym/Autoscale-v0", "zoo", None, ["--eval-episodes", "2"])
    recipe = list(RECIPES["servegym/Autoscale-v0"].train_args)
    assert "--seed" in recipe and "--seed" not in base
    assert base == [*recipe[:recipe.index("--seed")], *recipe[recipe.index("--seed") + 2:],
                    "--eval-episodes", "2"]
    with pytest.raises(ValueError, match="--out are set by the sweep"):
        sweep._base_args(ENV, None, None, ["--out", "x"])
    with pytest.raises(ValueError, match="no zoo recipe"):
        sweep._base_args("servegym/Nope-v0", "zoo", None, [])


def test_recorded_command_drops_only_where_it_runs():
    cmd = leaderboard.recorded_command(["--quick", "--ray", "--address", "auto", "--num-cpus=4",
                                        "--out", "d"])
    assert cmd == "python -m agents.leaderboard --quick --out d"


def test_train_py_hyperparams_errors(tmp_path, capsys):
    import train

    with pytest.raises(SystemExit):
        train.main(["--timesteps", "8", "--n-envs", "1", "--algo", "ppo", "--out", str(tmp_path),
                    "--hyperparams", "learnin_rate=1e-3", "--no-eval", "--no-progress"])
    assert "learnin_rate: not keyword arguments of PPO" in capsys.readouterr().err


# --- on Ray ------------------------------------------------------------------------------------

def test_two_trial_sweep_lists_both_with_ci_and_a_usable_recipe(local_ray, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep.main(sweep_args(out)) == 0
    rep = json.loads((out / "sweep.json").read_text())
    assert [t["seed"] for t in rep["trials"]] == [0, 1]
    assert all(t["status"] == "ok" and 0.0 <= t["metric"] <= 1.0 for t in rep["trials"])
    (cfg,) = rep["configs"]
    assert cfg["slo_attainment"]["n"] == 2 and cfg["seeds"] == [0, 1]
    assert cfg["slo_attainment"]["mean"] == pytest.approx(sum(t["metric"] for t in rep["trials"]) / 2)
    table = (out / "sweep.md").read_text()
    for t in rep["trials"]:
        assert t["trial_id"] in table
        tdir = out / t["dir"]
        run = json.loads((tdir / "run.json").read_text())
        assert run["seed"] == t["seed"] and run["algo"] == "ppo"
        assert (tdir / "final.zip").exists() and list((tdir / "tb").rglob("events.out.tfevents*"))
    env_id, recipe = load_recipe(out / "best_recipe.json")
    assert env_id == ENV and recipe.file == "kv_admission_dagger.zip"
    assert recipe.train_args == ("--timesteps", "256", "--n-envs", "2", "--algo", "ppo",
                                 "--env-kwargs", "window_requests=64", "--seed", "0")
    assert "slo_attainment" in capsys.readouterr().out
    # An existing sweep directory is not overwritten by accident.
    with pytest.raises(SystemExit):
        sweep.main(sweep_args(out))


def test_raising_trial_is_reported_and_the_others_finish_and_resume_keeps_results(
        local_ray, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"env.window_requests": {"grid": [64, -1]}}))
    out = tmp_path / "sweep"
    assert sweep.main(sweep_args(out, "--space", str(space), seeds="0")) == 0
    rep = json.loads((out / "sweep.json").read_text())
    by_cfg = {t["config"]["env.window_requests"]: t for t in rep["trials"]}
    assert by_cfg[64]["status"] == "ok" and by_cfg[64]["metric"] is not None
    bad = by_cfg[-1]
    assert bad["status"] == "error" and "window_requests must be >= 2, got -1" in bad["error"]
    assert "Traceback" in (out / bad["dir"] / "error.txt").read_text()
    assert rep["configs"][rep["best_config_id"]]["config"] == {"env.window_requests": 64}
    assert "window_requests must be >= 2" in (out / "sweep.md").read_text()
    # Resuming a finished sweep trains nothing again and reports the same trials.
    before = (out / by_cfg[64]["dir"] / "final.zip").stat().st_mtime_ns
    assert sweep.main(["--resume", "--out", str(out)]) == 0
    again = json.loads((out / "sweep.json").read_text())
    assert [(t["trial_id"], t["status"], t["metric"]) for t in again["trials"]] == \
        [(t["trial_id"], t["status"], t["metric"]) for t in rep["trials"]]
    assert (out / by_cfg[64]["dir"] / "final.zip").stat().st_mtime_ns == before


def test_ray_leaderboard_task_whose_worker_dies_is_retried(local_ray, tmp_path):
    from tqdm import tqdm

    from agents.leaderboard_ray import run_on_ray

    # Nested, so that cloudpickle sends it by value (workers cannot import this test module).
    def _dies_once(sc, spec, quick, episodes):
        """A run_policy whose first attempt kills its worker process (a lost worker, not an exception)."""
        import os
        from pathlib import Path

        import numpy as np

        from agents.scenarios import PolicyRun

        marker = Path(spec)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return PolicyRun(spec, [{"attempt_pid": float(marker.read_text())}], [], np.zeros(1), 0.0)

    sc = leaderboard.scenarios_for(["KVAdmission"])[0]
    marker = tmp_path / "attempt"
    (res,) = run_on_ray([(sc, [str(marker)], "")], True, 1, tqdm(disable=True), _dies_once)
    assert [r.policy for r in res.runs] == [str(marker)]
    assert res.runs[0].episodes[0]["attempt_pid"] > 0  # the second attempt saw the first's marker


def test_affinity_keeps_each_environment_on_the_workers_that_warmed_it():
    from agents.leaderboard_ray import Affinity

    runs = {"A": [(1.0, ("a", i)) for i in range(6)], "B": [(1.0, ("b", i)) for i in range(2)]}
    runs["B"].append((9.0, ("b", 9)))
    d = Affinity(runs, 2)
    # Worker 0 takes the environment with the most work (B: 11 s), its longest run first; worker
    # 1 then takes A (6 s with no holder beats B's 2 s left per holder).
    assert d.next(0) == ("b", 9) and d.next(1) == ("a", 0)
    # Each keeps to its own environment while it has runs, equal runs in plan order...
    assert [d.next(0), d.next(1), d.next(0), d.next(1)] == [("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    # ...and a worker whose environments are done helps with another one.
    assert [d.next(0), d.next(0), d.next(1), d.next(0)] == [("a", 3), ("a", 4), ("a", 5), None]
    assert d.warmed == [{"A", "B"}, {"A"}]


def test_ray_leaderboard_returns_runs_in_plan_order_from_worker_actors(local_ray):
    from tqdm import tqdm

    from agents.leaderboard_ray import run_on_ray

    def _pid(sc, spec, quick, episodes):
        """A run_policy that reports which worker process ran it."""
        import os

        import numpy as np

        from agents.scenarios import PolicyRun

        return PolicyRun(spec, [{"pid": float(os.getpid())}], [], np.zeros(1), 0.0)

    kv = leaderboard.scenarios_for(["KVAdmission"])[0]
    rt = leaderboard.scenarios_for(["Routing"])[0]
    plan = [(kv, [f"k{i}" for i in range(4)], ""), (rt, [f"r{i}" for i in range(4)], "")]
    res = run_on_ray(plan, True, 1, tqdm(disable=True), _pid,
                     hints={"scenarios": {rt.id: {"r3": {"wall_s": 9.0}}}})
    assert [[r.policy for r in s.runs] for s in res] == [p for _, p, _ in plan]
    # the longest run (r3) started first, alone on its worker, which then kept to Routing
    assert len({r.episodes[0]["pid"] for r in res[0].runs + res[1].runs}) == 2


def test_ray_leaderboard_equals_sequential_byte_for_byte(local_ray, tmp_path, monkeypatch):
    # The first quick KVAdmission scenario, every policy, one episode: the whole leaderboard
    # code path (plan, tasks, scoring, JSON, Markdown, HTML, plots) at test size.
    first = leaderboard.scenarios_for(["KVAdmission"])[:1]
    monkeypatch.setattr(leaderboard, "scenarios_for", lambda envs_filter: first)
    out = tmp_path / "lb"
    args = ["--quick", "--envs", "KVAdmission", "--seeds", "1", "--no-progress", "--out", str(out)]
    assert leaderboard.main(args) == 0
    seq = tmp_path / "seq"
    shutil.move(out, seq)
    assert leaderboard.main([*args, "--ray"]) == 0
    files = sorted(p.relative_to(seq) for p in seq.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert any(f.suffix == ".png" for f in files)
    wall = re.compile(rb"Wall time of this run: \d+ s\.")
    for rel in files:
        a, b = (seq / rel).read_bytes(), (out / rel).read_bytes()
        if rel.name == "timing.json":  # wall times and latencies: different on every run by design
            continue
        if rel.suffix in (".md", ".html"):  # the pages state the run's wall time, nothing else varies
            assert len(wall.findall(a)) == 1
            a, b = wall.sub(b"", a), wall.sub(b"", b)
        assert a == b, rel


@pytest.mark.slow  # ~80 s here; the space's Optuna domains and decoding are checked fast above
def test_optuna_search_with_asha_reports_held_out_steps(local_ray, tmp_path):
    space = tmp_path / "space.toml"
    space.write_text("[learning_rate]\nloguniform = [1e-5, 1e-3]\n")
    out = tmp_path / "sweep"
    argv = ["--env", ENV, "--algo", "ppo", "--seeds", "0", "--eval-episodes", "1",
            "--search", "optuna", "--space", str(space), "--samples", "2", "--asha",
            "--eval-every", "512", "--out", str(out), "--",
            "--timesteps", "1024", "--n-envs", "2", "--env-kwargs", "window_requests=64", "load=1.1"]
    assert sweep.main(argv) == 0
    rep = json.loads((out / "sweep.json").read_text())
    assert len(rep["trials"]) == 2 and len(rep["configs"]) == 2
    lrs = [t["config"]["learning_rate"] for t in rep["trials"]]
    assert lrs[0] != lrs[1] and all(1e-5 <= lr <= 1e-3 for lr in lrs)
    for t in rep["trials"]:
        # Finished (1024 steps, final evaluation) or stopped by ASHA after its 512-step report.
        assert (t["status"], t["timesteps"]) in (("ok", 1024), ("stopped", 512)), t
        assert t["metric"] is not None
        run = json.loads((out / t["dir"] / "run.json").read_text()) if t["status"] == "ok" else None
        if run:
            assert run["hyperparams"] == {"learning_rate": t["config"]["learning_rate"]}


def test_affinity_holds_back_runs_until_they_are_ready():
    from agents.leaderboard_ray import Affinity

    waiting = {("b", 9)}
    runs = {"A": [(1.0, ("a", 0))], "B": [(9.0, ("b", 9)), (2.0, ("b", 0))]}
    d = Affinity(runs, 2, ready=lambda key: key not in waiting)
    # B has the most work but its longest run waits (its shards): its longest ready run goes first
    assert d.next(0) == ("b", 0) and d.next(1) == ("a", 0)
    assert d.next(0) is None and not d.done()  # nothing ready: the worker idles
    waiting.clear()
    assert d.next(1) == ("b", 9) and d.done()


def test_ray_leaderboard_shards_the_oracles_with_byte_identical_results(local_ray, tmp_path, monkeypatch):
    # Disaggregation's clairvoyant oracles (static_best, oracle_dp) share one shard group: their
    # candidate replays run as separate Ray runs first; the scores equal the sequential run's.
    first = [sc for sc in leaderboard.scenarios_for(["Disaggregation"]) if sc.in_quick][:1]
    monkeypatch.setattr(leaderboard, "scenarios_for", lambda envs_filter: first)
    monkeypatch.setattr(leaderboard, "policies_for",
                        lambda env_id, extra: ["random", "colocated", "static_best", "oracle_dp"])
    out = tmp_path / "lb"
    args = ["--quick", "--envs", "Disaggregation", "--no-progress", "--out", str(out)]
    assert leaderboard.main(args) == 0
    seq = tmp_path / "seq"
    shutil.move(out, seq)
    assert leaderboard.main([*args, "--ray"]) == 0
    assert (seq / "leaderboard.json").read_bytes() == (out / "leaderboard.json").read_bytes()
    timing = json.loads((out / "timing.json").read_text())
    (groups,) = timing["shards"].values()
    assert groups["disaggregation.candidate_replays"]["n"] == 4  # 1 episode x 4 slices of the candidates
    assert "shards" not in json.loads((seq / "timing.json").read_text())


def _sequential_and_ray_error_lines(capsys, args: list[str]) -> list[str]:
    """The leaderboard's error line for ``args`` run sequentially, then with ``--ray --num-cpus 2``
    (asserted: exit 2 both times, no traceback, one error line each, the two lines equal)."""
    lines = []
    for extra in ([], ["--ray", "--num-cpus", "2"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as ex:
            leaderboard.main([*args, *extra])
        err = capsys.readouterr().err
        assert ex.value.code == 2 and "Traceback" not in err, err
        mine = [ln for ln in err.splitlines() if "agents.leaderboard: error:" in ln]
        assert len(mine) == 1, err
        lines.append(mine[0])
    assert lines[0] == lines[1], lines
    return lines


def test_ray_leaderboard_trace_shorter_than_a_window_is_the_sequential_one_line(local_ray, tmp_path, capsys):
    """--trace with a file of 100 requests on the quick KVAdmission user-trace scenario (windows of 256): with
    --ray --num-cpus 2 the same one line as the sequential run (exit 2), not the RuntimeError traceback
    naming the Ray run (main)."""
    f = tmp_path / "short.jsonl"
    f.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 1000 + 7 * i, "output_length": 50 + i}) + "\n"
                         for i in range(100)))
    args = ["--quick", "--no-progress", "--trace", str(f), "--envs", "kv_admission", "--scenarios", "*/user:*",
            "--out", str(tmp_path / "out")]
    lines = _sequential_and_ray_error_lines(capsys, args)
    assert f"error: --trace {f}: has 100 requests" in lines[1] and "windows of 256 requests" in lines[1], lines[1]


def test_ray_leaderboard_user_errors_are_the_sequential_one_line(local_ray, tmp_path, capsys, monkeypatch):
    """An error in the user's input raised inside a run (leaderboard.USER_ERRORS; here a TraceRefused, which
    main's --ray turned into 'RuntimeError: leaderboard --ray: scenario ..., policy ...: TraceRefused: ...'
    with a traceback: only TraceTooShort was unwrapped) ends as the sequential run's one line, exit 2; any
    other exception of a Ray run stays a RuntimeError naming the scenario and policy."""
    from tqdm import tqdm

    from agents.leaderboard_ray import run_on_ray

    def _refuses(sc, spec, quick, episodes, shards=None):
        """A run_policy that refuses its input (nested: cloudpickle sends it to the workers by value)."""
        from agents.leaderboard import TraceRefused

        if spec == "bug":
            raise ZeroDivisionError("a bug")
        raise TraceRefused(sc.id, "dir/f.jsonl", "no prefix\nblock ids")

    first = leaderboard.scenarios_for(["KVAdmission"])[:1]
    monkeypatch.setattr(leaderboard, "scenarios_for", lambda envs_filter: first)
    monkeypatch.setattr(leaderboard, "policies_for", lambda env_id, extra: ["random"])
    monkeypatch.setattr(leaderboard, "run_policy", _refuses)
    args = ["--quick", "--envs", "KVAdmission", "--seeds", "1", "--no-progress", "--out", str(tmp_path / "o")]
    lines = _sequential_and_ray_error_lines(capsys, args)
    assert lines[0].endswith(f"error: --trace dir/f.jsonl: scenario {first[0].id} refuses it: no prefix block ids; "
                             "give another trace, or leave kv_admission out with --envs"), lines[0]
    with pytest.raises(RuntimeError, match=rf"scenario {re.escape(first[0].id)}, policy bug: ZeroDivisionError: a bug"):
        run_on_ray([(first[0], ["bug"], "")], True, 1, tqdm(disable=True), _refuses,
                   user_errors=leaderboard.USER_ERRORS)


def test_ray_leaderboard_skips_the_environments_a_trace_cannot_serve_as_sequentially(local_ray, tmp_path, capsys,
                                                                                         monkeypatch):
    """--trace with an hour of requests without prefix block ids, no --envs: the PrefixEviction and Autoscale
    scenarios on it are skipped with the same lines and recorded the same way with --ray as sequentially
    (leaderboard.json byte for byte), and the KVAdmission one is scored on both paths."""
    f = tmp_path / "plain.jsonl"
    f.write_text("".join(json.dumps({"timestamp": 12_000 * i, "input_length": 1000 + 7 * (i % 50),
                                     "output_length": 50 + i % 100}) + "\n" for i in range(300)))
    monkeypatch.setattr(leaderboard, "policies_for",
                        lambda env_id, extra: ["random", leaderboard.SCORING[env_id].naive])  # fast
    args = ["--quick", "--no-progress", "--seeds", "1", "--trace", str(f), "--scenarios",
            "kv_admission/user:*/mlperf_server/load1.3/*", "prefix_eviction/user:*/capacity0.1/*",
            "autoscale/user:*/penalty0.01/*"]
    got = []
    out = tmp_path / "lb"
    for extra in ([], ["--ray", "--num-cpus", "2"]):
        capsys.readouterr()
        assert leaderboard.main([*args, *extra, "--out", str(out)]) == 0
        skips = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("skipping ")]
        got.append((skips, (out / "leaderboard.json").read_bytes()))
        shutil.rmtree(out)
    assert got[0] == got[1]
    skips, report = got[0][0], json.loads(got[0][1])
    assert [ln.split(":")[0].split("/")[0] for ln in skips] == ["skipping prefix_eviction", "skipping autoscale"], skips
    assert all(ln.endswith("; use --envs to choose environments") for ln in skips), skips
    assert [bool(s.get("skipped")) for s in report["scenarios"]] == [False, True, True]
    assert {r["scenario"].split("/")[0] for r in report["rows"]} == {"kv_admission"}
