"""One command-line convention: name forms, typed --env-kwargs, one-line errors with exit status 2,
--help generated from the config dataclasses, commands that run from any directory, JSON that is
byte-identical across runs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agents import cli, units
from envs import options

ROOT = Path(__file__).resolve().parents[1]
KV = "servegym/KVAdmission-v0"


# --- name forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", options.env_ids())
def test_every_name_form_resolves(env_id):
    short = options.short_name(env_id)
    forms = {env_id, env_id.split("/")[-1], short, options.package_name(env_id), short.lower(),
             env_id.upper()}
    assert {options.resolve_env_id(f) for f in forms} == {env_id}


def test_name_forms_of_kv_admission_and_unknown_name():
    for form in ("servegym/KVAdmission-v0", "KVAdmission", "kv_admission", "KVAdmission-v0"):
        assert cli.env_arg(form) == KV
    with pytest.raises(ValueError, match=r"unknown environment 'nope'; known: KVAdmission"):
        options.resolve_env_id("nope")


def test_scenario_id_prefix_names_its_environment():
    """``--envs multi_cluster`` (the first part of the multi-agent cluster's scenario ids) was refused as unknown."""
    from agents.scenarios import SCENARIOS

    assert options.resolve_env_id("multi_cluster") == "servegym/MultiCluster-v0"
    for sc in SCENARIOS:
        assert options.resolve_env_id(sc.id.split("/")[0]) == sc.env_id, sc.id


@pytest.mark.parametrize("env_id", options.single_agent_ids())
def test_make_vec_takes_every_name_form_the_clis_take(env_id):
    # envs.make_vec (README's Python API) took the exact id only: envs.make_vec("KVAdmission", 1) was a KeyError
    # while --env KVAdmission ran. Now the same resolver, each form the same environment.
    import envs
    from test_env_contract import SMALL

    short = options.short_name(env_id)
    for form in (env_id, env_id.split("/")[-1], short, options.package_name(env_id), short.lower()):
        vec = envs.make_vec(form, 1, seed=0, **SMALL[env_id])
        assert type(vec) is options.vec_class(env_id), form
        vec.close()


def test_make_vec_refuses_what_the_clis_refuse_in_one_line():
    import envs

    with pytest.raises(ValueError) as from_cli:
        options.resolve_env_id("nope")
    with pytest.raises(KeyError) as from_api:  # still the KeyError it raised for an unknown id
        envs.make_vec("nope", 1)
    assert str(from_api.value) == str(from_cli.value)
    assert str(from_api.value).startswith("unknown environment 'nope'; known: KVAdmission") \
        and "\n" not in str(from_api.value)
    with pytest.raises(ValueError, match=r"^'MultiCluster' is the multi-agent environment servegym/MultiCluster-v0: "
                                         r"envs.make_parallel builds it; envs.make_vec builds servegym/KVAdmission-v0"):
        envs.make_vec("MultiCluster", 1)


def test_make_parallel_takes_the_short_forms_of_its_ids():
    # envs.make_parallel took the exact id only: make_parallel("MultiCluster") was a KeyError
    import envs
    from envs.ids import resolve_parallel_id

    for form in ("servegym/MultiCluster-v0", "MultiCluster-v0", "MultiCluster", "multi_cluster", "multi", "MULTICLUSTER"):
        assert resolve_parallel_id(form) == "servegym/MultiCluster-v0", form
    for form in ("ExpertPlacementParallel", "expert_placement_parallel"):
        assert resolve_parallel_id(form) == "servegym/ExpertPlacementParallel-v0", form
    with pytest.raises(KeyError, match=r"^unknown PettingZoo environment 'KVAdmission'; known: MultiCluster "):
        envs.make_parallel("KVAdmission")
    assert type(envs.make_parallel("ExpertPlacementParallel")).__name__ == \
        type(envs.make_parallel("servegym/ExpertPlacementParallel-v0")).__name__


# --- --env-kwargs against the dataclass ----------------------------------------------------

def test_env_kwargs_take_their_type_from_the_annotation():
    kw = cli.parse_env_kwargs(["load=1", "capacity_blocks=500", "rate_scale=none", "gpu=H100",
                               "prefix_caching=True", "model=Llama-3.1-8B"], KV)
    assert kw == {"load": 1.0, "capacity_blocks": 500, "rate_scale": None, "gpu": "H100",
                  "prefix_caching": True, "model": "Llama-3.1-8B"}
    assert type(kw["load"]) is float and type(kw["capacity_blocks"]) is int
    # tuples: with or without parentheses (the unquoted form needs no shell quoting)
    assert cli.parse_env_kwargs(["load=0.6,0.8,1.0"], KV) == {"load": (0.6, 0.8, 1.0)}
    assert cli.parse_env_kwargs(["load=(0.6, 0.8)"], KV) == {"load": (0.6, 0.8)}
    assert cli.parse_env_kwargs(["load=[1, 2]"], KV) == {"load": (1.0, 2.0)}
    assert cli.parse_env_kwargs(["trace_params=(('rate_rps', 5),)"], KV) == {"trace_params": (("rate_rps", 5),)}
    # a string field keeps text that happens to parse as a number
    assert cli.parse_env_kwargs(["gpu=100"], KV) == {"gpu": "100"}


@pytest.mark.parametrize("raw", ["H100,L40S", "(H100,L40S)", "(H100, L40S)", "[H100, L40S]", "('H100','L40S')"])
def test_tuple_of_strings_unquoted(raw):
    """A tuple[str, ...] | str field reads the unquoted tuple forms the README documents for numbers
    (gpu_types=H100,L40S was the single GPU name 'H100,L40S'); one name stays a string."""
    autoscale = "servegym/Autoscale-v0"
    assert cli.parse_env_kwargs([f"gpu_types={raw}"], autoscale) == {"gpu_types": ("H100", "L40S")}
    assert cli.parse_env_kwargs(["gpu_types=H100,"], autoscale) == {"gpu_types": ("H100",)}
    assert cli.parse_env_kwargs(["gpu_types=H100"], autoscale) == {"gpu_types": "H100"}
    with pytest.raises(cli.UsageError, match="gpu_types must be"):
        cli.parse_env_kwargs(["gpu_types=(H100,,L40S)"], autoscale)


@pytest.mark.parametrize("item, says", [
    ("bogus=1", r"has no key 'bogus'; valid keys: trace, split, .*capacity_blocks"),
    ("load=abc", r"load must be a finite number > 0 or a non-empty tuple of them, got 'abc'$"),
    ("load=(0.5, -1)", r"load must be a finite number > 0 or a non-empty tuple of them, got \(0\.5, -1\)$"),
    ("rate_scale=0", r"^--env-kwargs 'rate_scale=0': rate_scale must be None or a finite number > 0, got 0$"),
    ("capacity_blocks=1.5", r"capacity_blocks must be int \| None, got '1.5'"),
    ("prefix_caching=1", r"prefix_caching must be bool"),
    ("tp=true", r"tp must be int"),
    ("load", r"expected KEY=VALUE"),
])
def test_env_kwargs_errors_name_the_key_and_what_is_allowed(item, says):
    with pytest.raises(cli.UsageError, match=says):
        cli.parse_env_kwargs([item], KV)


@pytest.mark.parametrize("item", ["load=1e400", "load=-1e999", "load=1" + "0" * 400, "load=(0.6, 1e400)",
                                  "slo_tpot_s=1e400"])
def test_a_number_beyond_a_floats_range_is_refused_not_read_as_inf(item):
    # 'inf' is refused (not a literal), but 1e400 was read as inf: Disaggregation-v0's load=1e400 ended in an
    # OverflowError traceback, KVAdmission-v0's played every arrival at once; a 400-digit integer for a float
    # field was an OverflowError traceback in the parser itself
    key = item.partition("=")[0]
    with pytest.raises(cli.UsageError, match=rf"^--env-kwargs '{re.escape(item)}': {key} must be .*"
                                             r"\(a number beyond a float's range: numbers must be finite\)$"):
        cli.parse_env_kwargs([item], KV)
    assert cli.parse_env_kwargs(["load=1e300"], KV) == {"load": 1e300}


def test_env_kwargs_workloads_literal_that_does_not_fit_is_not_taken_as_text():
    # before: a 3-element entry or an unclosed '(' fell back to text, split at commas into
    # entries such as "('azure_conv-v1'", and the environment reported that as an unknown trace
    ok = "workloads=('azure_conv-v1',('burstgpt_like-v1',{'duration_s':14400.0}))"
    assert cli.parse_env_kwargs([ok], KV)["workloads"] == ("azure_conv-v1", ("burstgpt_like-v1", (("duration_s", 14400.0),)))
    # unquoted names are a tuple of them (what the environment makes of the comma-separated string too)
    assert cli.parse_env_kwargs(["workloads=azure_conv-v1,bursty-v1"], KV) == {"workloads": ("azure_conv-v1", "bursty-v1")}
    with pytest.raises(cli.UsageError, match=r"workloads must be tuple\[.*got \"\('azure_conv-v1',\('b.*3\)\)\"$"):
        cli.parse_env_kwargs(["workloads=('azure_conv-v1',('burstgpt_like-v1',{'duration_s':1.0},3))"], KV)
    with pytest.raises(cli.UsageError, match=r"not a Python literal: SyntaxError: '\(' was never closed"):
        cli.parse_env_kwargs(["workloads=('azure_conv-v1',('burstgpt_like-v1',{'duration_s':1.0})"], KV)


def test_env_kwargs_given_twice_is_refused():
    with pytest.raises(cli.UsageError, match="load given twice"):
        cli.parse_env_kwargs(["load=1", "load=2"], KV)


def test_a_policy_given_twice_is_refused(tmp_path, monkeypatch):
    """evaluate --policy sarathi --policy sarathi played it twice: two rows of one name in the table and JSON."""
    with pytest.raises(cli.UsageError, match=r"^--policy 'sarathi': given twice; each policy plays once$"):
        cli.check_policies(KV, ["vllm_fcfs", "sarathi", "sarathi"])
    ckpt = tmp_path / "a.onnx"
    ckpt.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cli.UsageError, match=rf"^--policy '{ckpt}' and 'a.onnx' \(the same file\): given twice"):
        cli.check_policies(KV, [str(ckpt), "a.onnx"])
    cli.check_policies(KV, ["vllm_fcfs", "sarathi", str(ckpt)])


@pytest.mark.parametrize("env_id", options.env_ids())
def test_every_default_round_trips_through_the_parser(env_id):
    """What --help shows as a field's default parses back (as KEY=VALUE) to that default."""
    for f in options.config_fields(env_id):
        if dataclasses.is_dataclass(f.annotation) or not isinstance(f.default, (str, int, float, tuple, type(None))):
            continue
        item = cli.env_kwargs_args({f.name: f.default})[0]
        assert cli.parse_env_kwargs([item], env_id) == {f.name: f.default}, item


def test_capacity_blocks_zero_blames_capacity_blocks():
    with pytest.raises(cli.UsageError, match=r"capacity_blocks=0: capacity_blocks must be an integer >= 1") as err:
        cli.check_env(KV, {"capacity_blocks": 0})
    assert "mem_frac" not in str(err.value)


@pytest.mark.parametrize("blocks", [2**31, 2**32 + 26_099])
def test_capacity_blocks_beyond_int32_is_refused_not_wrapped(blocks):
    """The cluster state counts free KV blocks in int32: 2**32 + 26,099 blocks wrapped to the H100's 26,099 (the
    same episode, reward for reward, while the observation's free-KV share divided by the whole), and 2**31
    became a negative pool ('replica cannot schedule a queued request'). Refused, naming the field and the most."""
    from envs.core.engine import MAX_BLOCKS, EngineSpec

    with pytest.raises(ValueError, match=rf"^capacity_blocks must be at most {MAX_BLOCKS} .*got {blocks}$"):
        EngineSpec(capacity_blocks=blocks).build()
    with pytest.raises(cli.UsageError, match=rf"capacity_blocks={blocks}: capacity_blocks must be at most"):
        cli.check_env(KV, {"capacity_blocks": blocks})
    assert EngineSpec(capacity_blocks=MAX_BLOCKS).build().capacity_blocks == MAX_BLOCKS


def test_a_trace_the_env_refuses_without_env_kwargs_blames_the_trace(tmp_path):
    # was reported as '--env-kwargs (none given): ... has 2 requests, fewer than one window'
    f = tmp_path / "short.jsonl"
    f.write_text("".join(f'{{"timestamp": {i * 1000}, "input_length": 64, "output_length": 8, "hash_ids": [{i}]}}\n'
                         for i in range(4)))
    with pytest.raises(cli.UsageError, match=r"^--trace '.*short\.jsonl': .*fewer than one window"):
        cli.check_env("servegym/PrefixEviction-v0", {}, trace=str(f))
    # KVAdmission's message names the setting and the most it may be for this trace
    with pytest.raises(cli.UsageError, match=r"has 4 requests, fewer than one window of window_requests=1024; "
                                             r"set window_requests <= 4$"):
        cli.check_env(KV, {"split": "all"}, trace=str(f))
    # one request is singular (was '1 requests')
    f.write_text(f.read_text().splitlines()[0] + "\n")
    with pytest.raises(cli.UsageError, match=r"has 1 request, fewer than one window of window_requests=1024$"):
        cli.check_env(KV, {"split": "all"}, trace=str(f))


# --- --help generated from the config dataclasses ------------------------------------------

def test_help_lists_every_field_with_type_and_default_from_the_dataclass():
    text = options.env_help()
    for env_id in options.env_ids():
        assert env_id in text
        for f in options.config_fields(env_id):
            if not dataclasses.is_dataclass(f.annotation):
                assert f"    {f.name}: {f.type_text} = " in text, (env_id, f.name)
    for name in options.builtin_traces():
        assert f"  {name}: " in text


def test_help_follows_a_changed_dataclass(monkeypatch):
    """The listing is read from the dataclass: a new field appears with no other edit."""
    from envs import kv_admission as kva

    @dataclasses.dataclass(frozen=True)
    class Extended(kva.KVAdmissionConfig):
        brand_new_knob: int = 7  # a field added after the help text was written

    monkeypatch.setattr(kva.KVAdmissionVecEnv, "config_class", Extended, raising=False)
    assert "    brand_new_knob: int = 7  # a field added after the help text was written" in options.env_help([KV])
    assert cli.parse_env_kwargs(["brand_new_knob=3"], KV) == {"brand_new_knob": 3}


@pytest.mark.parametrize("module", ["agents.train", "agents.evaluate", "agents.export"])
def test_help_of_commands_with_env_kwargs(module, capsys):
    """train and export take single-agent environments only; evaluate the multi-agent one too."""
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    ids = options.env_ids() if module == "agents.evaluate" else options.single_agent_ids()
    assert out.rstrip().endswith(options.env_help(ids).rstrip())


def test_help_of_leaderboard_lists_ids_and_traces(capsys):
    from agents import leaderboard

    with pytest.raises(SystemExit):
        leaderboard.main(["--help"])
    out = capsys.readouterr().out
    assert all(e in out for e in options.env_ids()) and "mooncake_conv" in out


def test_bench_help_lists_only_each_benchmarks_flags(capsys):
    from envs import bench

    assert bench.main(["--help"]) == 0
    out = capsys.readouterr().out
    sections = out.split("\n--env ")[1:]
    assert len(sections) == len(bench.BENCHES) == len(options.env_ids())  # MultiCluster-v0 included
    by_env = {s.split(" ", 1)[0]: s for s in sections}
    assert "--steps" not in by_env["servegym/ExpertPlacement-v0"] and "--steps" in by_env[KV]
    every = {o for e in by_env for a in bench.parser_of(e)._actions for o in a.option_strings}
    for env_id, text in by_env.items():
        own = {o for a in bench.parser_of(env_id)._actions for o in a.option_strings}
        assert all(o in text for o in own)
        assert not any(f" {o} " in text.replace("\n", " ") for o in every - own), env_id
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--env", "expert_placement", "--steps", "5"])
    assert exit_.value.code == 2 and "--steps" in capsys.readouterr().err


# --- one line, exit status 2 ---------------------------------------------------------------

def _bad(tmp_path: Path) -> list[tuple[str, list[str], str]]:
    return [
        ("agents.train", ["--env-kwargs", "bogus=1", "--out", str(tmp_path / "t")], "valid keys: trace"),
        ("agents.train", ["--env", "Nope"], "argument --env: unknown environment 'Nope'"),
        ("agents.train", ["--timesteps", "0"], "--timesteps 0 --imitate 0"),
        # (every single-agent environment has a privileged teacher now, Autoscale-v0's since issue 21)
        ("agents.train", ["--env", "servegym/Autoscale-v0", "--families", "m_large", "--imitate", "96", "--out",
                          str(tmp_path / "t")], "--families m_large: not a training family of servegym/Autoscale-v0"),
        ("agents.train", ["--env", "servegym/Autoscale-v0", "--families", "bursty", "--trace", "bursty", "--imitate",
                          "96", "--out", str(tmp_path / "t")],
         "--families: not with --scenarios, --slo-tiers or --trace"),
        ("agents.train", ["--imitate", "10", "--out", str(tmp_path / "t")], "fewer than one decision per env"),
        ("agents.evaluate", ["--env-kwargs", "load=abc"], "load must be a finite number > 0"),
        ("agents.evaluate", ["--policy", "nope"], "--policy 'nope': not a policy of servegym/KVAdmission-v0; allowed: one of random, vllm_fcfs"),
        ("agents.evaluate", ["--trace", "nope"], "--trace 'nope': unknown trace 'nope'"),
        ("agents.evaluate", ["--env", "kv_admission", "--env-kwargs", "capacity_blocks=1.5"], "capacity_blocks must be int | None"),
        ("agents.evaluate", ["--episodes", "0"], "--episodes 0: must be >= 1"),
        ("agents.evaluate", ["--env", "ExpertPlacement", "--capacity"], "no capacity_knob"),
        # was ignored without a word (no capacity search runs without --capacity)
        ("agents.evaluate", ["--capacity-target", "0.5"], "--capacity-target 0.5: only with --capacity"),
        ("agents.leaderboard", ["--envs", "Nope", "--out", str(tmp_path / "lb")], "--envs Nope: unknown environment"),
        ("agents.leaderboard", ["--policy", "x.txt", "--out", str(tmp_path / "lb")], "--policy x.txt: expected"),
        ("agents.export", ["--policy", "missing.zip", "--onnx", str(tmp_path / "x.onnx")], "--policy 'missing.zip'"),
        ("agents.export", ["--env", "Routing", "--policy", "zoo", "--onnx", str(tmp_path / "x.onnx"),
                           "--env-kwargs", "replicas=x"], "replicas must be int"),
        ("agents.zoo", ["train", "--env", "Nope"], "unknown environment 'Nope'"),
        ("envs.bench", ["--env", "Nope"], "unknown environment 'Nope'"),
        ("envs.bench", ["--sizes", "x"], "--sizes: invalid int value"),
    ]


@pytest.mark.parametrize("args, says", [
    (["--sizes", "0"], "argument --sizes: 0: must be >= 1"),  # was a ZeroDivisionError traceback
    (["--sizes", "16", "-2"], "argument --sizes: -2: must be >= 1"),
    (["--repeats", "0"], "argument --repeats: 0: must be >= 1"),  # a ValueError traceback from steady_rate
    (["--warmup", "-5"], "argument --warmup: -5: must be >= 0"),  # the same
    (["--steps", "-1"], "argument --steps: -1: must be >= 1"),  # was read as row_steps' floor of 20 steps
    (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
])
def test_a_benchmark_count_out_of_range_is_one_line_before_timing(args, says, capsys):
    from envs import bench

    with pytest.raises(SystemExit) as exit_:
        bench.main(["--env", "KVAdmission", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == [f"python -m envs.bench --env servegym/KVAdmission-v0: error: {says}"], err
    for env_id in options.env_ids():  # every benchmark takes --sizes and --repeats from bench_parser
        for flag in ("--sizes", "--repeats"):
            with pytest.raises(SystemExit):
                bench.parser_of(env_id).parse_args([flag, "0"])
    capsys.readouterr()


def test_every_command_ends_a_user_error_in_one_line_with_status_2(tmp_path, capsys):
    import importlib

    for module, args, says in _bad(tmp_path):
        main = importlib.import_module(module if module != "agents.zoo" else "agents.zoo.__main__").main
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, (module, args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, (module, args, err)
        assert says in lines[0], (module, args, lines[0])


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_commands_run_outside_the_repository_and_zoo_list_pastes(tmp_path):
    r = _run(["-m", "agents.zoo", "list"], tmp_path)
    assert r.returncode == 0, r.stderr
    commands = [line for line in r.stdout.splitlines() if not line.startswith("#")]
    from agents.zoo import RECIPES

    assert len(commands) == len(RECIPES)
    trainers = {r.trainer for r in RECIPES.values()}
    assert trainers <= {"agents.train", "agents.train_multi"}
    for line in commands:
        argv = shlex.split(line)  # a shell reads it as these words (no syntax error)
        assert argv[:2] == ["python", "-m"] and argv[2] in trainers, line
        if argv[2] == "agents.train_multi":  # the multi-agent cluster's router: its own options
            assert "--workloads" in argv and "--out" in argv and "--env" not in argv, line
            continue
        assert "--env" in argv, line
        from agents.train import build_parser

        a = build_parser().parse_args(argv[3:])  # and agents.train accepts them
        cli.parse_env_kwargs(a.env_kwargs, a.env)
    r = _run(["-m", "agents.train", "--env", "Nope"], tmp_path)
    assert r.returncode == 2 and "No module named" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("python train.py: error: argument --env")


# --- evaluation JSON -----------------------------------------------------------------------

def test_evaluation_json_is_byte_identical_and_timing_goes_beside_it(tmp_path, capsys):
    from agents.evaluate import main

    args = ["--policy", "vllm_fcfs", "--policy", "random", "--episodes", "2", "--env-kwargs", "load=1.1",
            "window_requests=64"]
    assert main([*args, "--json", str(tmp_path / "a.json")]) == 0
    assert main([*args, "--json", str(tmp_path / "b.json")]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert "latency" not in (tmp_path / "a.json").read_text()
    timing = json.loads((tmp_path / "a.timing.json").read_text())
    assert set(timing["policies"]) == {"vllm_fcfs", "random"}
    assert timing["policies"]["random"]["decision_latency_us_p50"] > 0
    table = capsys.readouterr().out
    assert "| ttft_p99 (" in table and "| goodput (req/s) |" in table and "ttft_p99_s" not in table


# --- units ---------------------------------------------------------------------------------

def test_table_units():
    assert units.column("moe_layer_time_s", [0.0018, 0.0021]) == units.Column("moe_layer_time (us)", 1e6)
    assert units.column("ttft_p99_s", [0.4, 0.05]) == units.Column("ttft_p99 (ms)", 1e3)
    assert units.column("e2e_p99_s", [30.0]) == units.Column("e2e_p99 (s)", 1.0)
    assert units.column("migration_bytes", [3.2e10]).header == "migration (GB)"
    assert units.column("cost_usd").header == "cost ($)"
    assert units.column("goodput_rps").header == "goodput (req/s)"
    assert units.column("throughput_tok_s").header == "throughput (tok/s)"
    assert units.column("slo_attainment").header == "slo_attainment"
    assert units.cell("moe_layer_time_s", 0.0018, units.column("moe_layer_time_s", [0.0018])) == "1,800"
    assert units.cell("migration_bytes", 123456789012.0) == "123.5"
    assert units.fmt(float("nan")) == "–"
    # the unit inside the key (Disaggregation-v0's metric): was the raw byte count under its key
    assert units.column("kv_bytes_transferred") == units.Column("kv_transferred (GB)", 1e-9)
    assert units.cell("kv_bytes_transferred", 6_767_612_657_664.0) == "6,768"


def test_a_list_option_given_twice_keeps_both_uses():
    # argparse's nargs='+' let the last use replace the earlier ones: `--env-kwargs load=1.1
    # --env-kwargs window_requests=64` dropped load silently
    p = options.Parser(prog="x")
    p.add_argument("--env-kwargs", nargs="*", default=[])
    p.add_argument("--scenarios", nargs="+")
    p.add_argument_group("g").add_argument("--loads", type=float, nargs="+", default=[1.0])
    a = p.parse_args(["--env-kwargs", "load=1.1", "--scenarios", "a", "--env-kwargs", "window_requests=64",
                      "--scenarios", "b", "c", "--loads", "2", "--loads", "3"])
    assert a.env_kwargs == ["load=1.1", "window_requests=64"] and a.scenarios == ["a", "b", "c"]
    assert a.loads == [2.0, 3.0]
    again = p.parse_args(["--loads", "4"])  # the first use replaces the default; parsers are reused
    assert again.loads == [4.0] and again.env_kwargs == [] and again.scenarios is None
    assert p.parse_args([]).loads == [1.0]
    with pytest.raises(cli.UsageError, match="load given twice"):
        cli.parse_env_kwargs(p.parse_args(["--env-kwargs", "load=1", "--env-kwargs", "load=2"]).env_kwargs, KV)


def test_file_error_names_the_path_once():
    """A file option's one line: the value, the file it names where that differs, the message without its own
    leading path (agents.obs_version's errors start with the file: '--warm-start F: F: ...' before)."""
    assert cli.file_error("--init", "a/b.zip", ValueError("a/b.zip: trained on X")) == "--init a/b.zip: trained on X"
    assert cli.file_error("--warm-start", "zoo", "no such file", "z/r.zip") == "--warm-start zoo (z/r.zip): no such file"
    assert cli.file_error("--init", "a.zip", "bad\n  thing") == "--init a.zip: bad thing"
    assert cli.file_error("--init", "a.zip", "other.zip: x") == "--init a.zip: other.zip: x"


def _broken_policy_files(tmp_path: Path) -> dict[str, Path]:
    """Policy files a user may hand over broken: not a zip, a zip without SB3's ``data``, a checkpoint
    whose ``policy.pth`` was cut short (an interrupted copy), bytes that are no ONNX model."""
    import zipfile

    files = {"not_a_zip": tmp_path / "junk.zip", "no_data": tmp_path / "nodata.zip",
             "truncated_pth": tmp_path / "cut.zip", "not_onnx": tmp_path / "junk.onnx"}
    files["not_a_zip"].write_bytes(b"PK\x03\x04junk")
    with zipfile.ZipFile(files["no_data"], "w") as z:
        z.writestr("x", "y")
    with zipfile.ZipFile(ROOT / "agents" / "zoo" / "routing_dagger.zip") as src, \
            zipfile.ZipFile(files["truncated_pth"], "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, data[:100] if info.filename == "policy.pth" else data)
    files["not_onnx"].write_bytes(b"junk\n")
    return files


@pytest.mark.parametrize("kind", ["not_a_zip", "no_data", "truncated_pth", "not_onnx"])
def test_an_unreadable_policy_file_is_one_line_naming_it(tmp_path, capsys, kind):
    """Was a traceback (ValueError, torch's RuntimeError, onnxruntime's InvalidProtobuf) in
    agents.evaluate, and in the leaderboard after the scenarios before it had run (truncated_pth);
    now ``agents.policy_base.PolicyFileError`` naming the file, one line, exit status 2, in every
    command that loads one."""
    from agents import evaluate, export, leaderboard

    path = _broken_policy_files(tmp_path)[kind]
    runs = [(evaluate.main, ["--env", "Routing", "--policy", str(path), "--episodes", "1",
                             "--env-kwargs", "window_requests=64"])]
    if kind == "truncated_pth":
        runs += [(leaderboard.main, ["--quick", "--envs", "routing", "--policy", str(path), "--out",
                                     str(tmp_path / "lb")]),
                 (export.main, ["--env", "Routing", "--policy", str(path), "--onnx", str(tmp_path / "x.onnx")])]
    for main, args in runs:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert exit_.value.code == 2 and len(lines) == 1 and "Traceback" not in err, (main, err)
        assert f"{path}: " in lines[0] and ("checkpoint" in lines[0] or "not an ONNX model" in lines[0]), lines[0]
    assert not (tmp_path / "lb").exists() and not (tmp_path / "x.onnx").exists()


def test_evaluate_refuses_a_corrupt_policy_file_before_any_policy_plays(tmp_path, capsys, monkeypatch):
    """agents.evaluate read a checkpoint only when its turn came: ``--policy jsq --policy cut.zip`` played jsq's
    episodes first, then ended in the file's line. Every file is now read before the first episode (as the
    leaderboard does: cli.check_policy_file)."""
    from agents import evaluate

    path = _broken_policy_files(tmp_path)["truncated_pth"]
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("a policy played before the check"))
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--env", "Routing", "--policy", "jsq", "--policy", str(path), "--episodes", "1",
                       "--env-kwargs", "window_requests=64"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and f"--policy: {path}: " in lines[0], lines


@pytest.mark.parametrize("env_id", options.single_agent_ids())
@pytest.mark.parametrize("frac", ["1.5", "0", "-0.2", "1"])
def test_held_out_frac_out_of_range_blames_env_kwargs(env_id, frac):
    """``--env-kwargs held_out_frac=1.5`` was reported as ``--trace 'default': held_out_frac must lie in
    (0, 1)`` in KVAdmission-v0 and Routing-v0 (traces.split's TraceError); every environment now names
    the key under --env-kwargs, and refuses it whatever the split (``split=all`` ignored it)."""
    for split in ("test", "all"):
        kwargs = cli.parse_env_kwargs([f"held_out_frac={frac}", f"split={split}"], env_id)
        with pytest.raises(cli.UsageError) as e:
            cli.check_env(env_id, kwargs)
        msg = str(e.value)
        assert msg.startswith("--env-kwargs ") and f"held_out_frac={float(frac)}" in msg, (split, msg)
        assert "held_out_frac must" in msg, msg


def test_trace_and_split_given_as_env_kwargs_are_taken_once(tmp_path, capsys):
    """``--env-kwargs trace=...`` was ignored by agents.evaluate for ``--trace``'s default, and in
    train.py both ``trace=`` and ``split=`` ended in a TypeError traceback (``make_vec() got multiple
    values``); now the env-kwargs value is used where the option is not given, two different values
    are one line naming both, and train.py refuses a split other than its training split."""
    from agents import evaluate, train

    bad = [(evaluate.main, ["--env", "Routing", "--trace", "azure_conv", "--env-kwargs", "trace=bursty"],
            "--trace azure_conv --env-kwargs trace=bursty: two different values of trace"),
           (train.main, ["--env", "Routing", "--trace", "azure_conv", "--env-kwargs", "trace=bursty", "--out",
                         str(tmp_path / "t")], "--trace azure_conv --env-kwargs trace=bursty: two different"),
           (train.main, ["--env", "Routing", "--env-kwargs", "split=test", "--out", str(tmp_path / "t")],
            "--env-kwargs split='test': training plays the training split")]
    for main, args, says in bad:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and says in err[0], (args, err)
    out = tmp_path / "r.json"
    assert evaluate.main(["--env", "Routing", "--policy", "jsq", "--episodes", "1", "--env-kwargs", "trace=bursty",
                          "window_requests=64", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["trace"] == "bursty" and "trace" not in report["env_kwargs"], report


def test_an_error_names_the_argument_at_fault(tmp_path, capsys):
    """Errors blamed the wrong argument: ``--env-kwargs split=nonsense`` (taken out of the env-kwargs as
    --split's value) was shown as ``--env-kwargs window_requests=50: ... split must be``; ``trace_seed=-1``
    as ``--trace 'default': seed must be an integer >= 0`` (the trace loader's check); a trace whose every
    request failed (output 0) as ``--env-kwargs window_requests=50: measure_capacity_rps ...``. Each names
    the field at fault now, and the file for the trace; an error naming no field blames them all, as before."""
    from agents import evaluate

    out0 = tmp_path / "out0.jsonl"
    out0.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 500 + i, "output_length": 0}) + "\n"
                            for i in range(300)))
    cases = [
        (["--env-kwargs", "window_requests=50", "split=nonsense"],
         "--env-kwargs split=nonsense: split must be one of train, test, all (as --split)"),
        (["--env-kwargs", "window_requests=50", "trace_seed=-1"],
         "--env-kwargs trace_seed=-1: KVAdmission: trace_seed must be an integer >= 0, got -1"),
        (["--trace", str(out0), "--env-kwargs", "window_requests=50"],
         f"--trace {str(out0)!r}: measure_capacity_rps: KVAdmission: training part of trace 'out0.jsonl': none "
         "served of its 200 request(s): 200 failed in the trace (e.g. output 0), 0 rejected by the engine"),
        (["--env-kwargs", "window_requests=50", "slo_ttft_s=-1"], "--env-kwargs slo_ttft_s=-1.0: "),
    ]
    for args, says in cases:
        with pytest.raises(SystemExit) as exit_:
            evaluate.main(["--env", "KVAdmission", "--policy", "vllm_fcfs", "--episodes", "1", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1, (args, err)
        assert err[0].startswith(f"python -m agents.evaluate: error: {says}"), (args, err[0])
    # the trace_seed check is the config's own (every environment, the Python API too)
    for env_id in ("servegym/Routing-v0", "servegym/Autoscale-v0", "servegym/Disaggregation-v0"):
        with pytest.raises(cli.UsageError, match=r"^--env-kwargs trace_seed=-1: \w+: trace_seed must be an integer "
                                                 r">= 0, got -1$"):
            cli.check_env(env_id, {"trace_seed": -1, "held_out_frac": 0.3})


def test_options_are_taken_by_their_full_names_only(capsys, tmp_path):
    """argparse's abbreviations took `agents.leaderboard --seed 3` as `--seeds 3` (three episodes per scenario,
    no word said) and `agents.autoscale_fidelity --env Autoscale` as `--env-kwargs Autoscale` (an error blaming
    --env-kwargs): envs.options.Parser, every command's parser, takes full names only."""
    from agents import autoscale_fidelity, leaderboard

    for main, args, says in (
            (leaderboard.main, ["--quick", "--seed", "3", "--out", str(tmp_path / "lb")], "unrecognized arguments: --seed 3"),
            (autoscale_fidelity.main, ["--env", "Autoscale"], "unrecognized arguments: --env Autoscale")):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and err[0].endswith(says), err
    assert not (tmp_path / "lb").exists()


@pytest.mark.parametrize("module, has, has_not", [
    ("agents.leaderboard", ["--envs accepts the id", "--trace takes a trace file's path only"], ["(--trace NAME"]),
    ("agents.autoscale_fidelity", ["(--env-kwargs trace=NAME"], ["--env accepts", "(--trace NAME"]),
    ("agents.bench_policy", ["--env accepts the id"], ["built-in traces"]),
    ("agents.zoo.__main__", ["--env accepts the id"], ["built-in traces"]),
    ("agents.evaluate", ["--env accepts the id", "(--trace NAME; or a path"], []),
])
def test_help_footer_names_only_the_options_the_command_has(module, has, has_not, capsys):
    """Every command's --help ended with 'environments (--env accepts ...)' and 'built-in traces (--trace
    NAME; or a path ...)': the leaderboard takes --envs and a --trace file path only (a built-in name is 'no
    such file'), autoscale_fidelity has neither option, bench_policy and zoo take no trace."""
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert all(h in out for h in has) and not any(h in out for h in has_not), (module, out[-2000:])
