"""agents.zoo seeds: the planned commands of every seed run (as the device scripts it replaced ran
them, recipes read at run time), its errors, and its runner on stand-in commands."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agents.zoo import KV_ADMISSION_WORKLOADS, MULTI_TEAM, PENDING, RECIPES
from agents.zoo.args import REPO_ROOT, recipe_args
from agents.zoo.seeds import SEED_RUNS, Command, PlanError, Settings, drop_option, option_values, plan, set_option
from agents.zoo.seeds_driver import execute

PY = "python3"
OUT, W = Path("/o"), Path("/w")


def _recipe(env_id, pending=False):
    return (PENDING.get(env_id) if pending else None) or RECIPES[env_id]


def _base(env_id, pending=False):
    """The recipe's arguments without --seed, as the scripts' recipe blocks printed them."""
    args = recipe_args(env_id, _recipe(env_id, pending))
    i = args.index("--seed")
    return args[:i] + args[i + 2:]


def _replace(args, option, value):
    args = list(args)
    args[args.index(option) + 1] = value
    return args


def _expected(name: str, mode: str, ncpu: int) -> dict:
    """What agents/zoo/train_NAME.sh MODE ran (at main c6bfa59), with OUT=/o W=/w NCPU=ncpu."""
    env_id = SEED_RUNS[name].env_id
    zips = [f"/o/s{k}.zip" for k in range(3)]
    policies = [x for z in zips for x in ("--policy", z)]
    seeds_opts: list[str] = []
    teacher = None
    small = mode == "small"
    if name in ("routing", "prefix_eviction", "expert_placement"):
        train = _base(env_id, pending=name in ("prefix_eviction", "routing"))
        if small:
            train = _replace(train, "--imitate", {"routing": "4096", "prefix_eviction": "4096",
                                                  "expert_placement": "1536"}[name])
        per_seed = [[PY, "-m", "agents.train", *train, "--no-eval", "--no-progress", "--seed", str(k), "--out",
                     f"/w/s{k}"] for k in range(3)]
        lbq = (["--seeds", "2"] if name == "expert_placement" else ["--quick"]) if small else []
        lb_extra = [*lbq, *policies]
        agents = zips
        seeds_opts = {"routing": ["--beside", "ttft_p99_s"], "prefix_eviction": [],
                      "expert_placement": ["--metric", "normalized_score", "--beside", "migration_bytes",
                                           "moe_layer_time_s"]}[name]
    elif name == "autoscale":
        train = _base(env_id, pending=True)
        if small:
            train = _replace(_replace(_replace(_replace(train, "--imitate", "6144"), "--n-envs", "6"),
                                      "--timesteps", "3072"), "--critic-warmup", "768")
        per_seed = [[PY, "-m", "agents.train", *train, "--no-eval", "--no-progress", "--seed", str(k), "--out",
                     f"/w/s{k}"] for k in range(3)]
        lb_extra = [*(["--seeds", "1"] if small else []), *policies]
        agents = zips
    elif name == "multi":
        train = _base(env_id)
        if small:
            train = [*_replace(train, "--steps", "768")]
            i = train.index("--clusters")
            train = train[:i] + ["--clusters", "1"] + train[i + 2:]
        per_seed = [[PY, "-m", "agents.train_multi", *train, "--seed", str(k), "--out", f"/w/s{k}"] for k in range(3)]
        seats = ",".join(f"{r}={p}" for r, p in MULTI_TEAM.items())
        agents = [f"router={z},{seats}" for z in zips]
        lbq = ["--seeds", "1", "--scenarios", "multi_cluster/transfer/azure_code_bursty-v1/*load0.3/*"] if small else []
        lb_extra = [*lbq, *[x for a in agents for x in ("--team", a)]]
        seeds_opts = ["--beside", "ttft_p99_s"]
    elif name == "disaggregation":
        train = _base(env_id)  # --env ENV --scenarios G --imitate 9216 --timesteps 0 --n-envs 8 --imitate-kwargs ...
        g = train[train.index("--scenarios") + 1]
        ek = ["--env-kwargs", "episodes_per_load=1"] if small else []
        if small:
            train = _replace(_replace(train, "--imitate", "768"), "--n-envs", "4")
        teacher = [PY, "-m", "agents.disaggregation_teacher", "--scenarios", g, *ek, "--procs", str(ncpu), "--out",
                   "/w/teacher.pkl"]
        pin = ncpu >= 15
        per_seed = [[*(["taskset", "-c", f"{5 * k}-{5 * k + 4}"] if pin else []), PY, "-m", "agents.train", *train,
                     *ek, "--teacher-data", "/w/teacher.pkl", "--vec-procs", "4" if pin else "1", "--no-eval",
                     "--no-progress", "--seed", str(k), "--out", f"/w/s{k}"] for k in range(3)]
        lb_extra = [*(["--quick"] if small else []), *policies]
        agents = zips
        seeds_opts = ["--beside", "role_changes"]
    else:  # kv_admission
        train = _base(env_id)
        assert train[2] == "--env-kwargs" and train[3].startswith("workloads=")
        tiers = ["mlperf_server", "mlperf_interactive:0.9,1.1", "distserve_chatbot:1.1"] if mode == "tiers" else []
        if small:
            # the three cheap families only: the script's workloads=('azure_conv-v1','bursty-v1','../shared/...csv')
            cheap = [str((REPO_ROOT / w).resolve()) if "/" in w else w for w in KV_ADMISSION_WORKLOADS
                     if "mooncake" not in w]
            assert len(cheap) == 3
            ek = ["workloads=" + ",".join(cheap), "window_requests=256", "load=1.3"]
            train = [*train[:3], *ek, *train[4:]]
            train = _replace(train, "--imitate", "30000")
        ek = train[3:train.index("--imitate")]
        ti = ["--slo-tiers", *tiers] if tiers else []
        assert "--hardware" not in train  # the recipe trains on one engine
        hw = []
        if tiers:  # one engine per SLO tier, 6 envs per tier in place of 16
            train = _replace(train, "--n-envs", "18")
        ne = []
        split = {"full": "32", "small": "4", "tiers": "16"}[mode]
        teacher = [PY, "-m", "agents.kv_admission_teacher", "--env-kwargs", *ek, *ti, *hw, "--candidates", "transfer",
                   "--split", split, "--procs", str(ncpu), "--out", "/w/teacher.pkl"]
        per_seed = [[PY, "-m", "agents.train", *train, *ne, *ti, "--teacher-data", "/w/teacher.pkl", "--no-eval",
                     "--no-progress", "--seed", str(k), "--out", f"/w/s{k}"] for k in range(3)]
        lb_extra = [*(["--quick"] if small else []), *policies]
        agents = zips
    lb = [PY, "-m", "agents.leaderboard", "--envs", SEED_RUNS[name].envs, *lb_extra, "--ray", "--num-cpus", str(ncpu),
          "--no-progress", "--out", "/w/lb"]
    table = [PY, "-m", "agents.leaderboard_seeds", "/w/lb/leaderboard.json", "--agent", *agents, "--seeds", "0", "1",
             "2", *seeds_opts, "--json", "/w/seeds.json"]
    return {"teacher": teacher, "seeds": per_seed, "leaderboard": lb, "table": table}


CASES = [(n, m) for n, r in SEED_RUNS.items() for m in r.modes]


def _same_options(got, want):
    """The same argv up to the order of options (argparse reads them in any order)."""
    def split(argv):
        head, opts, cur = [], [], None
        for tok in argv:
            if tok.startswith("--"):
                cur = [tok]
                opts.append(cur)
            elif cur is None:
                head.append(tok)
            else:
                cur.append(tok)
        return head, sorted(map(tuple, opts))
    return split(list(got)) == split(list(want))


@pytest.mark.parametrize("name, mode", CASES)
@pytest.mark.parametrize("ncpu", [2, 16])
def test_plan_runs_what_the_device_script_ran(name, mode, ncpu):
    p = plan(name, Settings(OUT, W, ncpu, mode), python=PY)
    want = _expected(name, mode, ncpu)
    assert p.warmup.argv == (PY, "-m", "agents.zoo.warmup", SEED_RUNS[name].warmup) and p.warmup.log == W / "warm.log"
    if want["teacher"] is None:
        assert p.teacher is None
    else:
        assert _same_options(p.teacher.argv, want["teacher"]) and p.teacher.log == W / "teacher.log"
    assert len(p.seeds) == 3
    for k, (c, w) in enumerate(zip(p.seeds, want["seeds"])):
        assert _same_options(c.argv, w), (c.argv, w)
        assert c.log == W / f"train_s{k}.log" and c.err is None
    assert list(p.leaderboard.argv) == want["leaderboard"] and p.leaderboard.log == W / "lb.log"
    assert list(p.seeds_table.argv) == want["table"]
    assert (p.seeds_table.log, p.seeds_table.err) == (W / "seeds.md", W / "lb.log")
    tag = "17" if name == "disaggregation" else "21"
    assert (p.logs_tgz, p.lb_tgz) == (f"logs{tag}.tgz", f"lb{tag}.tgz")


def test_plan_reads_the_recipe_when_planned(monkeypatch):
    from agents.zoo import Recipe

    env_id = "servegym/Routing-v0"
    monkeypatch.setitem(RECIPES, env_id, Recipe("x.zip", ("--imitate", "77", "--timesteps", "0", "--seed", "0"), "t"))
    monkeypatch.delitem(PENDING, env_id, raising=False)  # Routing reads a pending recipe first (none here)
    p = plan("routing", Settings(OUT, W, 2))
    assert p.seeds[1].argv[3:] == ("--env", env_id, "--imitate", "77", "--timesteps", "0", "--no-eval",
                                   "--no-progress", "--seed", "1", "--out", "/w/s1")
    monkeypatch.setitem(PENDING, "servegym/PrefixEviction-v0", RECIPES[env_id])  # PrefixEviction: a pending one first
    assert "77" in plan("prefix_eviction", Settings(OUT, W, 2)).seeds[0].argv
    monkeypatch.setitem(PENDING, "servegym/Routing-v0", Recipe("y.zip", ("--imitate", "5", "--seed", "0"), "t"))
    assert "5" in plan("routing", Settings(OUT, W, 2)).seeds[0].argv  # Routing's pending recipe (issue 21)
    ep = "servegym/ExpertPlacement-v0"
    monkeypatch.setitem(PENDING, ep, Recipe("y.zip", ("--imitate", "5", "--seed", "0"), "t"))  # not ExpertPlacement's
    assert "5" not in plan("expert_placement", Settings(OUT, W, 2)).seeds[0].argv


def test_settings_override_the_mode():
    p = plan("kv_admission", Settings(OUT, W, 4, "small", steps=100, rl_steps=50, n_envs=8, candidates="heuristics",
                                      split=3, shard="1/4", tiers=("mlperf_server", "distserve_chatbot:1.1")))
    a = list(p.seeds[0].argv)
    for opt, vals in (("--imitate", ["100"]), ("--timesteps", ["50"]), ("--n-envs", ["8"]),
                      ("--slo-tiers", ["mlperf_server", "distserve_chatbot:1.1"])):
        i = a.index(opt)
        assert a[i + 1:i + 1 + len(vals)] == vals and a.count(opt) == 1
    t = list(p.teacher.argv)
    assert t[t.index("--candidates") + 1] == "heuristics" and t[t.index("--split") + 1] == "3"
    assert t[t.index("--shard") + 1] == "1/4" and "--slo-tiers" in t
    tiers = plan("kv_admission", Settings(OUT, W, 4, "tiers", tiers=("mlperf_server",)))
    assert tiers.seeds[0].argv[tiers.seeds[0].argv.index("--n-envs") + 1] == "6"  # 6 envs per tier
    two = plan("expert_placement", Settings(OUT, W, 4, n_seeds=2))
    a = two.seeds_table.argv
    assert len(two.seeds) == 2 and a[a.index("--seeds") + 1:a.index("--seeds") + 4] == ("0", "1", "--metric")
    assert a.count("--policy") == 0 and len(a[a.index("--agent") + 1:a.index("--seeds")]) == 2


def test_env_kwargs_are_set_by_key_for_the_seeds_and_the_teacher():
    ep = plan("expert_placement", Settings(OUT, W, 2, env_kwargs=("drift=(0.005,0.02,0.08,0.3)",)))
    a = list(ep.seeds[0].argv)
    assert a[a.index("--env-kwargs") + 1:a.index("--env-kwargs") + 2] == ["drift=(0.005,0.02,0.08,0.3)"]
    kv = plan("kv_admission", Settings(OUT, W, 2, env_kwargs=("load=1.3", "window_requests=512")))
    for argv in (kv.seeds[1].argv, kv.teacher.argv):
        a = list(argv)
        i = a.index("--env-kwargs")
        assert a.count("--env-kwargs") == 1 and a[i + 1].startswith("workloads=azure_conv-v1,")  # the recipe's kept
        assert a[i + 2:i + 4] == ["load=1.3", "window_requests=512"]
    again = plan("kv_admission", Settings(OUT, W, 2, env_kwargs=("workloads=bursty-v1",)))
    a = list(again.seeds[0].argv)
    assert a[a.index("--env-kwargs") + 1] == "workloads=bursty-v1"  # set by key: the recipe's value replaced
    r = _cli(["expert_placement", "--dry-run"], {"OUT": "/o", "ENV_KWARGS": "drift=0.3 layers=2"})
    assert r.returncode == 0 and "--env-kwargs drift=0.3 layers=2 --no-eval" in r.stdout, r.stderr


def test_stages_of_a_teacher_run():
    t = plan("kv_admission", Settings(OUT, W, 4, stage="teacher"))
    assert t.teacher is not None and t.lines()[-1] == "cp /w/teacher.pkl /o/teacher.pkl"  # stops there
    tr = plan("disaggregation", Settings(OUT, W, 4, stage="train", teacher=Path("/x/t.pkl")))
    assert tr.teacher is None and tr.teacher_file == Path("/x/t.pkl")
    assert "--teacher-data" in tr.seeds[0].argv and "cp /x/t.pkl /w/teacher.pkl" in tr.lines()


@pytest.mark.parametrize("name, s, msg", [
    ("nope", {}, "seed run 'nope'"),
    ("routing", {"mode": "tiers"}, "--mode 'tiers': must be full or small for routing"),
    ("routing", {"stage": "teacher"}, "--stage 'teacher': must be all for routing"),
    ("routing", {"candidates": "static"}, "--candidates: routing's seed run does not take it"),
    ("kv_admission", {"stage": "train"}, "--stage train: set TEACHER"),
    ("kv_admission", {"teacher": Path("/t.pkl")}, "--teacher /t.pkl: only with --stage train"),
    ("multi", {"n_envs": 4}, "--n-envs / --rl-steps / --env-kwargs: multi's trainer agents.train_multi"),
    ("multi", {"env_kwargs": ("load=1",)}, "--n-envs / --rl-steps / --env-kwargs: multi's trainer"),
    ("expert_placement", {"env_kwargs": ("drift",)}, "--env-kwargs 'drift': each entry must be KEY=VALUE"),
    ("kv_admission", {"env_kwargs": ("drift=0.3",)}, "--env-kwargs 'drift=0.3': servegym/KVAdmission-v0 has no key"),
    ("kv_admission", {"env_kwargs": ("load=1.3", "load=1.5")}, "--env-kwargs 'load=1.5': load given twice"),
    ("kv_admission", {"env_kwargs": ("load=",)},
     "--env-kwargs 'load=': load must be a finite number > 0 or a non-empty tuple of them, got ''"),
    ("routing", {"env_kwargs": ("load=abc",)}, "--env-kwargs 'load=abc': load must be a finite number > 0"),
    ("routing", {"steps": 0}, "--steps 0: must be a positive integer"),
    ("routing", {"n_seeds": 0}, "--n-seeds 0"),
    ("kv_admission", {"candidates": "bogus"}, "--candidates 'bogus': must be heuristics, static or transfer"),
    ("kv_admission", {"shard": "5/3"}, "--shard 5/3: must satisfy 0 <= I < N"),
    ("kv_admission", {"shard": "x"}, "--shard 'x': must be I/N with integers"),
    ("kv_admission", {"tiers": ("bogus",)}, "--tiers bogus: SLO tier 'bogus'"),
    ("kv_admission", {"tiers": ("mlperf_server:x",)}, "--tiers mlperf_server:x: loads must be numbers"),
])
def test_plan_refuses_bad_settings_in_one_line(name, s, msg):
    with pytest.raises(PlanError, match="^" + msg.replace("(", r"\(").replace("*", r"\*")) as err:
        plan(name, Settings(OUT, W, 2, **s))
    assert "\n" not in str(err.value)


def test_option_helpers():
    a = ["--env", "E", "--imitate-kwargs", "epochs=2", "b=1", "--seed", "0"]
    assert set_option(a, "--imitate-kwargs", ["x=1"]) == ["--env", "E", "--imitate-kwargs", "x=1", "--seed", "0"]
    assert set_option(a, "--n-envs", ["4"])[-2:] == ["--n-envs", "4"]
    assert drop_option(a, "--seed") == a[:-2] and drop_option(a, "--nope") == a


def _cli(args, env=None, cwd=None):
    e = {k: v for k, v in os.environ.items() if k not in ("OUT", "W", "NCPU", "STEPS", "TEACHER", "ENV_KWARGS")}
    e.update(env or {})
    e["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "agents.zoo", "seeds", *args], env=e, capture_output=True,
                          text=True, timeout=120, cwd=cwd or REPO_ROOT)


def test_dry_run_prints_the_plan_and_creates_nothing(tmp_path):
    out, w = tmp_path / "out", tmp_path / "w"
    r = _cli(["routing", "--mode", "small", "--dry-run"], {"OUT": str(out), "W": str(w), "NCPU": "3", "STEPS": "64"})
    assert r.returncode == 0, r.stderr
    p = plan("routing", Settings(out, w, 3, "small", steps=64))
    assert r.stdout.splitlines()[2:] == p.lines()[2:] and p.seeds[2].shell() + " &" in r.stdout
    assert "--imitate 64" in r.stdout and "--num-cpus 3" in r.stdout and str(w / "train_s2.log") in r.stdout
    assert not out.exists() and not w.exists()


@pytest.mark.parametrize("args, env, msg", [
    (["routing"], {}, "--out: not given (set OUT"),
    (["routing", "--mode", "bogus"], {"OUT": "X"}, "--mode 'bogus'"),
    (["kv_admission", "--stage", "nope"], {"OUT": "X"}, "--stage 'nope'"),
    (["routing"], {"OUT": "X", "NCPU": "many"}, "NCPU 'many': must be an integer"),
    (["kv_admission", "--stage", "train"], {"OUT": "X", "TEACHER": "/no/such.pkl"}, "/no/such.pkl: no such file"),
    (["kv_admission", "--mode", "tiers", "--stage", "train"], {"OUT": "X"}, "--stage train: set TEACHER"),
    (["nope"], {"OUT": "X"}, "NAME 'nope'"),
])
def test_cli_errors_exit_2_in_one_line_before_creating_anything(tmp_path, args, env, msg):
    env = {k: str(tmp_path / v) if k == "OUT" else v for k, v in env.items()}
    r = _cli(args, env, cwd=tmp_path)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_out_or_work_dir_exits_2_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for args, msg in ((["--out", str(blocker)], f"--out / OUT {blocker}: exists and is not a directory"),
                      (["--out", str(blocker / "o")], f"--out / OUT {blocker / 'o'}: {blocker} is not a directory"),
                      (["--out", str(tmp_path / "o"), "--work", str(blocker)],
                       f"--work / W {blocker}: exists and is not a directory")):
        r = _cli(["routing", *args], cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert sorted(x.name for x in tmp_path.iterdir()) == ["afile"]


def test_wrappers_exec_the_driver_with_their_arguments(tmp_path):
    for name in SEED_RUNS:
        script = REPO_ROOT / "agents" / "zoo" / f"train_{name}.sh"
        code = [x for x in script.read_text().splitlines() if x and not x.startswith("#")]
        assert len(code) == 1 and code[0].endswith(f"python3 -m agents.zoo seeds {name} \"$@\"")
    e = {k: v for k, v in os.environ.items() if k != "OUT"}
    r = subprocess.run(["bash", str(REPO_ROOT / "agents/zoo/train_multi.sh")], env=e, capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "--out: not given" in r.stderr  # OUT unset: exit 2 (the scripts exited 1)
    # options after the positional ones reach the driver (a dropped --dry-run ran the whole plan)
    r = subprocess.run(["bash", str(REPO_ROOT / "agents/zoo/train_routing.sh"), "small", "--dry-run"],
                       env={**e, "OUT": str(tmp_path / "o"), "W": str(tmp_path / "w")}, capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "--imitate" in r.stdout, r.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == []
    r = subprocess.run(["bash", str(REPO_ROOT / "agents/zoo/train_kv_admission.sh"), "small", "all", "--ncpu", "0"],
                       env={**e, "OUT": str(tmp_path / "o")}, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "--ncpu 0: must be a positive integer" in r.stderr


def _wrapper(name: str, args: list[str], tmp_path) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("OUT", "W", "NCPU", "STEPS", "TEACHER", "ENV_KWARGS")}
    return subprocess.run(["bash", str(REPO_ROOT / "agents" / "zoo" / f"train_{name}.sh"), *args],
                          env={**e, "OUT": str(tmp_path / "o"), "W": str(tmp_path / "w")}, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("name", list(SEED_RUNS))
def test_wrappers_take_an_option_where_mode_is_expected_as_the_default_mode(tmp_path, name):
    """train_NAME.sh --dry-run: MODE (and STAGE) left out, the options reach the driver (it was argparse's
    'argument --mode: expected one argument')."""
    r = _wrapper(name, ["--dry-run"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"# {name} (full, stage all): ") and "\n# start (full" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_wrappers_mode_then_an_option_and_bad_modes(tmp_path):
    r = _wrapper("kv_admission", ["small", "--dry-run"], tmp_path)  # STAGE left out: all
    assert r.returncode == 0 and r.stdout.startswith("# kv_admission (small, stage all): "), r.stderr
    r = _wrapper("routing", ["", "--dry-run"], tmp_path)  # an empty MODE is the default, as ${1:-full} was
    assert r.returncode == 0 and r.stdout.startswith("# routing (full, stage all): "), r.stderr
    r = _wrapper("kv_admission", ["--dry-run", "small", "teacher"], tmp_path)  # the words after an option
    assert r.returncode == 0 and r.stdout.startswith("# kv_admission (small, stage teacher): "), r.stderr
    for args, msg in ((["fulll", "--dry-run"], "MODE / --mode 'fulll': must be full, small or tiers"),
                      (["--dry-run", "fulll"], "MODE / --mode 'fulll': must be full, small or tiers"),
                      (["small", "--mode", "full", "--dry-run"], "MODE 'small' and --mode 'full': give one")):
        r = _wrapper("kv_admission", args, tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


# --- the runner on stand-in commands (fast: no training) ---------------------------------------------

def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _stand_in(tmp_path, seed_code=None, lb_rc=3):
    """A real plan of a teacher run whose commands are replaced by tiny Python programs that write
    what the real ones would (run.json, final.zip, leaderboard.json/md, a plot, seeds.json)."""
    out, w = tmp_path / "out", tmp_path / "w"
    p = plan("disaggregation", Settings(out, w, 2, "small"))
    seeds = tuple(Command(_py(seed_code or
                              f"import os,sys; os.makedirs(r'{w}/s{k}'); open(r'{w}/s{k}/final.zip','w').write('z{k}');"
                              f"open(r'{w}/s{k}/run.json','w').write('{{}}'); print('seed {k} done')"),
                          w / f"train_s{k}.log") for k in range(3))
    lb = Command(_py(f"import os; os.makedirs(r'{w}/lb'); open(r'{w}/lb/leaderboard.md','w').write("
                     f"'# x\\n## Headline\\n\\nrow 1\\nservegym/skip\\nrow 2\\n'); open(r'{w}/lb/p.png','w');"
                     f"open(r'{w}/lb/leaderboard.json','w').write('{{}}'); raise SystemExit({lb_rc})"), w / "lb.log")
    table = dataclasses.replace(p.seeds_table, argv=_py(f"open(r'{w}/seeds.json','w').write('{{}}'); print('| table |')"))
    teacher = dataclasses.replace(p.teacher, argv=_py(f"open(r'{w}/teacher.pkl','wb').write(b'T'); print('replays')"))
    warm = dataclasses.replace(p.warmup, argv=_py("print('warm')"))
    return dataclasses.replace(p, warmup=warm, teacher=teacher, seeds=seeds, leaderboard=lb, seeds_table=table), out, w


def test_runner_writes_what_the_scripts_wrote(tmp_path, capsys):
    p, out, w = _stand_in(tmp_path)
    assert execute(p) == 3  # the leaderboard's exit status
    stages = (out / "stages.txt").read_text().splitlines()
    assert [x.split(" s: ", 1)[1] for x in stages] == [p.start, "numba warm-up", "teacher", "DAgger",
                                                        "leaderboard (rc 3)"]
    assert sorted(x.name for x in out.iterdir()) == ["lb17.tgz", "logs17.tgz", "s0.zip", "s1.zip", "s2.zip",
                                                     "stages.txt"]  # disaggregation: seeds.* stay in lb17.tgz
    assert (out / "s2.zip").read_text() == "z2"
    with tarfile.open(out / "logs17.tgz") as t:
        assert sorted(t.getnames()) == ["lb.log", "s0/run.json", "s1/run.json", "s2/run.json", "seeds.json",
                                        "seeds.md", "teacher.log", "teacher.pkl", "train_s0.log", "train_s1.log",
                                        "train_s2.log", "warm.log"]
    with tarfile.open(out / "lb17.tgz") as t:
        names = set(t.getnames())
    assert {"lb/leaderboard.md", "lb/leaderboard.json", "lb/seeds.json", "seeds.md"} <= names and "lb/p.png" not in names
    printed = capsys.readouterr().out
    assert "seed 1 done" in printed and "| table |" in printed and "row 1\nrow 2" in printed  # the Headline, filtered


def test_runner_stops_at_a_failed_seed(tmp_path, capsys):
    p, out, w = _stand_in(tmp_path, seed_code="import sys; print('boom'); sys.exit(1)")
    assert execute(p) == 1
    assert (out / "stages.txt").read_text().splitlines()[-1].endswith("seed 0 failed (rc 1)")
    assert not (out / "s0.zip").exists() and (out / "logs17.tgz").exists() and "boom" in capsys.readouterr().out


def test_runner_teacher_stage_returns_the_file(tmp_path):
    p, out, w = _stand_in(tmp_path)
    p = dataclasses.replace(p, settings=dataclasses.replace(p.settings, stage="teacher"))
    assert execute(p) == 0
    assert (out / "teacher.pkl").read_bytes() == b"T" and not (out / "s0.zip").exists()


def test_an_environment_variable_the_run_does_not_take_gets_a_note():
    r = _cli(["multi", "--dry-run"], {"OUT": "/o", "ENV_KWARGS": "load=0.8"})
    assert r.returncode == 0 and "load=0.8" not in r.stdout, r.stderr
    assert r.stderr.strip() == "note: ENV_KWARGS=load=0.8 not used: multi's run (full, stage all) does not take it"


def test_env_kwargs_and_tiers_given_twice_keep_every_use():
    # the last --env-kwargs replaced the earlier ones (load=1.3 dropped silently)
    r = _cli(["kv_admission", "--dry-run", "--env-kwargs", "load=1.3", "--env-kwargs", "window_requests=512",
              "--tiers", "mlperf_server", "--tiers", "mlperf_interactive:0.9"], {"OUT": "/o"})
    assert r.returncode == 0, r.stderr
    assert " load=1.3 window_requests=512 --imitate" in r.stdout
    assert "--slo-tiers mlperf_server mlperf_interactive:0.9 " in r.stdout
    r = _cli(["kv_admission", "--dry-run", "--env-kwargs", "load=1.3", "--env-kwargs", "load=1.5"], {"OUT": "/o"})
    assert r.returncode == 2 and "--env-kwargs 'load=1.5': load given twice" in r.stderr
