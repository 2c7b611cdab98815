"""The leaderboard: scoring arithmetic on hand-made results, and a short real run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import leaderboard as lb
from agents import leaderboard_report as rep
from agents import scenarios as scn
from agents.scenarios import Scenario, Scoring


def _result(env_id: str, values: dict[str, list[float]], extra_key: str | None = None) -> lb.ScenarioResult:
    sc = Scenario(id="test/x/y/v1", env_id=env_id, trace="default")
    runs = []
    for p, vs in values.items():
        eps = [{"m": v, "other": 2 * v, **({extra_key: 10 * v} if extra_key else {})} for v in vs]
        runs.append(lb.PolicyRun(p, eps, [], np.array([1e-6]), 0.0))
    return lb.ScenarioResult(sc, runs)


@pytest.fixture
def scoring(monkeypatch):
    def use(s: Scoring, env_id: str = "test/Env-v0"):
        monkeypatch.setitem(scn.SCORING, env_id, s)
        monkeypatch.setitem(lb.SCORING, env_id, s)
        return env_id
    return use


def test_normalized_score_is_zero_at_naive_and_hundred_at_bound(scoring):
    env = scoring(Scoring(main_metric="m", higher_is_better=True, naive="naive", bound="oracle"))
    res = _result(env, {"naive": [0.2, 0.4], "oracle": [0.8, 1.0], "mid": [0.5, 0.7]})
    rows = {r["policy"]: r for r in lb.score_scenario(res)}
    assert rows["naive"]["normalized"]["value"] == pytest.approx(0.0)
    assert rows["oracle"]["normalized"]["value"] == pytest.approx(100.0)
    assert rows["mid"]["normalized"]["value"] == pytest.approx(50.0)
    assert [rows[p]["rank"] for p in ("oracle", "mid", "naive")] == [1, 2, 3]
    lo, hi = rows["mid"]["main"]["ci95"]
    assert 0.5 <= lo <= 0.6 <= hi <= 0.7


def test_lower_is_better_ranks_and_constant_bound(scoring):
    env = scoring(Scoring(main_metric="m", higher_is_better=False, naive="a", bound=None, bound_value=0.0))
    res = _result(env, {"a": [4.0, 4.0], "b": [1.0, 1.0], "c": [1.0, 1.0]})
    rows = {r["policy"]: r for r in lb.score_scenario(res)}
    assert rows["b"]["rank"] == rows["c"]["rank"] == 1 and rows["a"]["rank"] == 3  # ties share a rank
    assert rows["b"]["normalized"]["value"] == pytest.approx(75.0)  # (1 - 4) / (0 - 4)


def test_environment_reported_normalized_metric_is_used_as_is(scoring):
    env = scoring(Scoring(main_metric="m", higher_is_better=True, naive="a", normalized_metric="ns"))
    res = _result(env, {"a": [0.1, 0.3], "b": [0.2, 0.2]}, extra_key="ns")
    rows = {r["policy"]: r for r in lb.score_scenario(res)}
    assert rows["a"]["normalized"]["value"] == pytest.approx(2.0)


def test_scenario_ids_are_unique_and_versioned():
    ids = [s.id for s in scn.SCENARIOS]
    assert len(ids) == len(set(ids))
    assert all(i.rsplit("/", 1)[-1].startswith("v") for i in ids)
    assert all(s.env_id in scn.SCORING for s in scn.SCENARIOS)


def test_unknown_env_filter_is_named():
    with pytest.raises(ValueError, match="Nope"):
        scn.scenarios_for(["Nope"])


def test_quick_run_writes_complete_deterministic_outputs(tmp_path):
    args = ["--quick", "--envs", "KVAdmission", "--seeds", "1", "--no-progress"]
    assert lb.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert rep.check(tmp_path / "a") == []
    report = json.loads((tmp_path / "a" / "leaderboard.json").read_text())
    kv = [s for s in scn.SCENARIOS if s.env_id == "servegym/KVAdmission-v0" and s.in_quick]
    n_policies = len(lb.policies_for("servegym/KVAdmission-v0", []))
    # The zoo agent was trained on a workload distribution (RECIPES[...].on_distribution), so the
    # transfer track's quick scenario plays every policy too.
    from agents.zoo import RECIPES

    assert RECIPES["servegym/KVAdmission-v0"].on_distribution
    assert len(report["rows"]) == n_policies * len(kv)
    assert [s.id for s in kv if s.track == "transfer"] == [
        e["id"] for e in report["scenarios"] if e.get("track") == "transfer"]
    # Same command (same output dir), same JSON.
    first = (tmp_path / "a" / "leaderboard.json").read_bytes()
    assert lb.main([*args, "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "leaderboard.json").read_bytes() == first
    html = (tmp_path / "a" / "leaderboard.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html


def test_check_reports_missing_rows(tmp_path):
    (tmp_path / "plots").mkdir()
    for name in rep.FILES:
        (tmp_path / name).write_text("{}" if name.endswith(".json") else "")
    assert any("no 'rows'" in p for p in rep.check(tmp_path))


def _minimal_leaderboard_dir(out, report):
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "plots" / "a.png").write_bytes(b"png")
    (out / "leaderboard.json").write_text(json.dumps(report))
    (out / "leaderboard.md").write_text("| s/v1 |")
    (out / "leaderboard.html").write_text("<img src='data:image/png;base64,AA'>")
    (out / "timing.json").write_text("{}")


@pytest.mark.parametrize("spoil, says", [
    (lambda d: d["rows"][0].pop("main"), "rows[0]: no 'main'"),
    (lambda d: d["rows"][0]["main"].update(value="x"), "rows[0]: main value 'x' is not a number"),
    (lambda d: d["rows"][0]["main"].update(ci95=[0.1]), "rows[0]: main ci95 [0.1] is not a pair of numbers"),
    (lambda d: d["rows"][1].update(rank=None), "rows[1]: 'rank' is None, not an int"),
    (lambda d: d["rows"].__setitem__(2, 7), "rows[2]: not an object (int)"),
    (lambda d: d["rows"][0].update(scenario="t/v1"), "rows[0]: scenario 't/v1' is not among 'scenarios'"),
    (lambda d: d["scenarios"][0].pop("scoring"), "scenario s/v1: no 'scoring' with 'naive' and 'bound'"),
    (lambda d: d["scenarios"][0].update(id=None), "scenarios[0] has no string 'id'"),
    (lambda d: d.update(rows=5), "'rows' is not a list (int)"),
])
def test_check_names_a_malformed_leaderboard_json_instead_of_raising(tmp_path, spoil, says):
    """--check DIR ended in a KeyError/TypeError traceback for a row or scenario missing a field or holding
    the wrong type; each is now a problem naming the row (its docstring: "malformed or incomplete rows")."""
    def row(policy, rank):
        return {"scenario": "s/v1", "policy": policy, "rank": rank, "metrics": {"m": 0.5},
                "main": {"value": 0.5, "ci95": [0.4, 0.6]}}

    report = {"version": 1, "command": "cmd", "scenarios": [{"id": "s/v1", "scoring": {"naive": "a", "bound": None}}],
              "rows": [row("random", 1), row("a", 2), row("b", 3)]}
    _minimal_leaderboard_dir(tmp_path, report)
    assert rep.check(tmp_path) == []
    spoil(report)
    _minimal_leaderboard_dir(tmp_path, report)
    problems = rep.check(tmp_path)
    assert any(p.endswith(says) for p in problems), problems


def test_readme_section_is_rewritten_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{rep.README_START}\nold\n{rep.README_END}\nrest\n")
    report = {"command": "cmd", "scenarios": [], "rows": []}
    rep.update_readme(readme, report)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.endswith("rest\n") and "`cmd`" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="marker"):
        rep.update_readme(readme, report)


def test_a_scenarios_intervals_do_not_depend_on_the_rest_of_the_run():
    from agents.scenarios import PolicyRun, ScenarioResult

    sc = lb.scenarios_for(["KVAdmission"])[0]
    runs = [PolicyRun(p, [{"slo_attainment": v} for v in vals], [], np.zeros(1), 0.0)
            for p, vals in (("vllm_fcfs", (0.2, 0.5, 0.4, 0.9)), ("sjf", (0.3, 0.8, 0.6, 0.7)))]
    res = ScenarioResult(sc, runs)
    alone = lb.build_report([res], "cmd", False)["rows"]
    other = ScenarioResult(lb.scenarios_for(["KVAdmission"])[1], runs)
    after = [r for r in lb.build_report([other, res], "cmd", False)["rows"] if r["scenario"] == sc.id]
    assert alone == after


def test_a_scenario_that_quick_or_track_leaves_out_is_named_as_such(tmp_path, capsys):
    transfer = "kv_admission/transfer/azure_llm_2023_code/llama3.1-8b-h100/mlperf_server/load0.3/v2"
    for flags, why in ((["--quick"], "--quick leaves out every scenario it matches"),
                       (["--track", "main"], "--track main leaves out every scenario it matches"),
                       ([], "python -m agents.leaderboard --help lists the ids")):
        sid = transfer if flags else "kv_admission/nope"
        with pytest.raises(SystemExit) as err:
            lb.main(["--envs", "kv_admission", *flags, "--scenarios", sid, "--out", str(tmp_path / "o")])
        assert err.value.code == 2
        assert f"--scenarios {sid}: no scenario of this run matches ({why})" in capsys.readouterr().err


def test_scenarios_given_twice_keeps_both(tmp_path, capsys):
    # the last --scenarios replaced the earlier ones: 'kv_admission/nope' was dropped and the run went on
    ok = "kv_admission/bursty/llama3.1-8b-h100/mlperf_server/load1.1/v3"
    with pytest.raises(SystemExit) as err:
        lb.main(["--envs", "kv_admission", "--scenarios", "kv_admission/nope", "--scenarios", ok,
                 "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and "--scenarios kv_admission/nope: no scenario" in capsys.readouterr().err


def test_a_trace_shorter_than_a_scenarios_window_is_one_line_naming_the_scenario(tmp_path, capsys):
    """--trace with a file of 100 requests: the KVAdmission scenario replays windows of 256 (quick) requests;
    one line (exit 2) naming the scenario, the file and the window, not a TooFewRequests traceback."""
    import json

    f = tmp_path / "short.jsonl"
    f.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 1000 + 7 * i, "output_length": 50 + i}) + "\n"
                         for i in range(100)))
    line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), "--envs", "kv_admission",
                               "--scenarios", "*/user:*", "--out", str(tmp_path / "out")])
    assert line.startswith(f"python -m agents.leaderboard: error: --trace {f}: has 100 requests, fewer than one "
                           "window of scenario kv_admission/user:short.jsonl/"), line
    assert line.endswith("(it replays windows of 256 requests): give a longer trace, or leave kv_admission out "
                         "with --envs"), line


def test_trace_too_short_line_is_built_from_the_fields_and_survives_pickling(tmp_path):
    """The leaderboard's one line for a trace shorter than a window comes from the exception's fields (scenario
    id, trace, requests, window; was the TooFewRequests text cut at '; set window_requests'), the same on the
    Ray path (the exception crosses processes pickled: its fields survive); run_policy turns a TooFewRequests
    into it, naming the scenario and its file."""
    import pickle

    from agents.leaderboard import TraceTooShort, run_policy, too_short_line
    from agents.scenarios import user_trace_scenarios

    err = TraceTooShort("routing/user:a.jsonl/x", "dir/a.jsonl", 900, 1024)
    line = ("--trace dir/a.jsonl: has 900 requests, fewer than one window of scenario routing/user:a.jsonl/x "
            "(it replays windows of 1024 requests): give a longer trace, or leave routing out with --envs")
    assert str(err) == line == too_short_line("routing/user:a.jsonl/x", "dir/a.jsonl", 900, 1024)
    back = pickle.loads(pickle.dumps(err))
    assert (back.scenario, back.trace, back.requests, back.window, str(back)) == (
        "routing/user:a.jsonl/x", "dir/a.jsonl", 900, 1024, line)
    assert isinstance(back, ValueError)
    # a built-in scenario's trace is not a --trace
    assert too_short_line("kv_admission/azure_code/x", "azure_code", 10, 256).startswith("trace azure_code: has 10")
    f = tmp_path / "short40.jsonl"
    f.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 1000 + 7 * i, "output_length": 50 + i}) + "\n"
                         for i in range(40)))
    sc = user_trace_scenarios([str(f)], ["kv_admission"])[0]
    with pytest.raises(TraceTooShort) as got:
        run_policy(sc, "vllm_fcfs", True, 1)
    assert (got.value.scenario, got.value.trace, got.value.requests, got.value.window) == (sc.id, str(f), 40, 256)


def _the_error(capsys, args: list[str]) -> str:
    """The one line ``agents.leaderboard`` ends with for ``args`` (asserted: exit 2, nothing else on stderr)."""
    with pytest.raises(SystemExit) as ex:
        lb.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert ex.value.code == 2 and len(err) == 1, err
    return err[0]


def _requests_file(path, n: int):
    path.write_text("".join(json.dumps({"timestamp": 500 * i, "input_length": 1000 + 7 * i, "output_length": 50 + i})
                            + "\n" for i in range(n)))
    return path


def _no_run(*args, **kwargs):
    raise AssertionError("a scenario ran before the --trace file was checked")


@pytest.mark.parametrize("where", [[], ["--ray", "--num-cpus", "1"]])
def test_a_too_short_trace_is_refused_before_any_scenario_runs(tmp_path, capsys, monkeypatch, where):
    """--trace with a 1-request file and every KVAdmission scenario: the built-in scenarios come first in the
    plan and ran (110 s here) before the user-trace one said the file was too short; now the file is checked
    before any run, sequentially and with --ray (no Ray started), and '1 request' is singular."""
    monkeypatch.setattr(lb, "run_scenario", _no_run)
    import agents.leaderboard_ray as lbr

    monkeypatch.setattr(lbr, "run_on_ray", _no_run)
    f = _requests_file(tmp_path / "one.jsonl", 1)
    line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), "--envs", "kv_admission", *where,
                               "--out", str(tmp_path / "out")])
    assert line.startswith(f"python -m agents.leaderboard: error: --trace {f}: has 1 request, fewer than one "
                           "window of scenario kv_admission/user:one.jsonl/"), line
    assert "(it replays windows of 256 requests)" in line, line


def test_a_trace_its_environment_refuses_is_one_line_before_any_scenario_runs(tmp_path, capsys, monkeypatch):
    """--trace with a file without prefix block ids on PrefixEviction-v0: a ValueError traceback after the
    built-in scenarios had run; now one line (TraceRefused) naming the file, the scenario and the reason."""
    monkeypatch.setattr(lb, "run_scenario", _no_run)
    f = _requests_file(tmp_path / "plain.jsonl", 600)
    line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), "--envs", "prefix_eviction",
                               "--out", str(tmp_path / "out")])
    assert line.startswith(f"python -m agents.leaderboard: error: --trace {f}: scenario "
                           "prefix_eviction/user:plain.jsonl/"), line
    assert "refuses it: PrefixEviction: trace 'plain.jsonl' has no prefix block ids" in line, line
    assert line.endswith("; give another trace, or leave prefix_eviction out with --envs"), line


def test_trace_refused_keeps_its_fields_through_pickling():
    """TraceRefused crosses to the driver from a Ray run pickled (agents.leaderboard_ray): same fields, same
    line; the reason is one line."""
    import pickle

    err = lb.TraceRefused("routing/user:a.jsonl/x", "dir/a.jsonl", "bad\n  file")
    back = pickle.loads(pickle.dumps(err))
    assert (back.scenario, back.trace, back.reason) == ("routing/user:a.jsonl/x", "dir/a.jsonl", "bad file")
    assert str(back) == str(err) == ("--trace dir/a.jsonl: scenario routing/user:a.jsonl/x refuses it: bad file; "
                                     "give another trace, or leave routing out with --envs")
    assert isinstance(back, ValueError) and isinstance(back, lb.USER_ERRORS)


def _hour_file(path, n: int = 300):
    """``n`` requests spread over an hour, no prefix block ids: KVAdmission replays it (windows of 256 with
    --quick); PrefixEviction-v0 needs block ids, Autoscale-v0 a day in each of its parts."""
    path.write_text("".join(json.dumps({"timestamp": 3_600_000 * i // n, "input_length": 1000 + 7 * (i % 50),
                                        "output_length": 50 + i % 100}) + "\n" for i in range(n)))
    return path


PLAIN = ["kv_admission/user:*/mlperf_server/load1.3/*", "prefix_eviction/user:*/capacity0.1/*",
         "autoscale/user:*/penalty0.01/*"]
NO_BLOCKS = ("needs prefix block ids (a Mooncake-format file with hash_ids, or the built-in mooncake_conv), "
             "the file has none")
NO_DAY = ("needs at least 288,000 s of arrivals (one 86,400 s episode in each of its train and held-out parts, "
          "held_out_frac=0.3), the file spans 3,588 s")


def test_a_plain_trace_skips_the_environments_that_cannot_use_it(tmp_path, capsys, monkeypatch):
    """--trace with an hour of requests without prefix block ids and no --envs: the whole run was refused with
    one line because PrefixEviction and Autoscale could not use it; now their --trace scenarios are skipped,
    each with a line saying what the file lacks and what to do, recorded as skipped in leaderboard.json, and
    the KVAdmission scenario on the file is scored."""
    naive = {env: lb.SCORING[env].naive for env in lb.SCORING}
    monkeypatch.setattr(lb, "policies_for", lambda env_id, extra: ["random", naive[env_id]])  # fast
    f = _hour_file(tmp_path / "plain.jsonl")
    out = tmp_path / "out"
    assert lb.main(["--quick", "--no-progress", "--seeds", "1", "--trace", str(f), "--scenarios", *PLAIN,
                    "--out", str(out)]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    ids = [sc.id for sc in scn.user_trace_scenarios([str(f)], None)]
    pe, auto = (next(i for i in ids if i.startswith(e) and m in i) for e, m in
                (("prefix_eviction", "capacity0.1/"), ("autoscale", "penalty0.01/")))
    hint = "; use --envs to choose environments"
    assert err == [f"skipping {pe}: {NO_BLOCKS}{hint}", f"skipping {auto}: {NO_DAY}{hint}"], err
    report = json.loads((out / "leaderboard.json").read_text())
    assert {s["id"]: s.get("skipped") for s in report["scenarios"]} == {
        next(i for i in ids if i.startswith("kv_admission/") and "mlperf_server/load1.3" in i): None,
        pe: NO_BLOCKS + hint, auto: NO_DAY + hint}
    assert {r["scenario"].split("/")[0] for r in report["rows"]} == {"kv_admission"}
    assert {r["policy"] for r in report["rows"]} == {"random", "vllm_fcfs"}
    assert rep.check(out) == []


def test_seeds_past_a_trace_files_windows_say_that_windows_replay(tmp_path, capsys, monkeypatch):
    """issue 21: a held-out part with one window replayed three times is one sample. --seeds 3 on a --trace file
    of 2 windows replayed window 0 without a word (main-track entries had no distinct_windows); now the entry
    has distinct_windows and a note, leaderboard.md says it beside the episodes and stderr has a warning line.
    A main-track entry without replays stays as it was (no distinct_windows)."""
    monkeypatch.setattr(lb, "policies_for", lambda env_id, extra: ["random", "vllm_fcfs"])  # fast
    f = _hour_file(tmp_path / "plain.jsonl", 600)  # split=all: 2 windows of 256 requests with --quick
    out = tmp_path / "out"
    assert lb.main(["--quick", "--no-progress", "--seeds", "3", "--trace", str(f), "--envs", "kv_admission",
                    "--scenarios", PLAIN[0], "--out", str(out)]) == 0
    (entry,) = json.loads((out / "leaderboard.json").read_text())["scenarios"]
    note = "3 episodes replay 2 distinct held-out window(s): 2 independent sample(s), not 3"
    assert (entry["episodes"], entry["distinct_windows"], entry["note"]) == (3, 2, note)
    assert f"warning: {entry['id']}: {note}" in capsys.readouterr().err.splitlines()
    assert f"3 episodes ({note})" in (out / "leaderboard.md").read_text()
    sc = scn.scenarios_for(["KVAdmission"])[0]
    res = lb.ScenarioResult(sc, [lb.PolicyRun(p, [{"slo_attainment": 0.5}] * 2, [], np.zeros(1), 0.0, windows=2)
                                 for p in ("random", "vllm_fcfs")])
    (plain,) = lb.build_report([res], "cmd", False, code={})["scenarios"]
    assert "distinct_windows" not in plain and "note" not in plain


@pytest.mark.parametrize("named", [["prefix_eviction"], ["kv_admission", "prefix_eviction"]])
def test_a_plain_trace_on_an_environment_named_with_envs_is_refused(tmp_path, capsys, monkeypatch, named):
    """The same file with --envs naming PrefixEviction-v0 (alone, or beside KVAdmission-v0, which can use it):
    the user asked for that environment, so the run is refused with one line before any scenario runs."""
    monkeypatch.setattr(lb, "run_scenario", _no_run)
    f = _hour_file(tmp_path / "plain.jsonl")
    line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), "--envs", *named, "--scenarios",
                               *(g for g in PLAIN if g.split("/")[0] in named),
                               "--out", str(tmp_path / "out")])
    assert line.startswith(f"python -m agents.leaderboard: error: --trace {f}: scenario "
                           "prefix_eviction/user:plain.jsonl/"), line
    assert line.endswith("refuses it: PrefixEviction: trace 'plain.jsonl' has no prefix block ids (use "
                         "mooncake_conv or a Mooncake-format file); give another trace, or leave prefix_eviction "
                         "out with --envs"), line


def test_a_trace_no_environment_can_use_is_one_line(tmp_path, capsys, monkeypatch):
    """Without --envs, a file of 3 requests that every environment of the run cannot use: one line (exit 2),
    before any scenario runs, with each environment's reason, instead of a run of skip lines and no rows."""
    monkeypatch.setattr(lb, "run_scenario", _no_run)
    f = _requests_file(tmp_path / "tiny.jsonl", 3)
    line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), "--scenarios", "kv_admission/user:*",
                               "prefix_eviction/user:*", "--out", str(tmp_path / "out")])
    assert line == (f"python -m agents.leaderboard: error: --trace {f}: no environment of this run can use it "
                    "(kv_admission needs at least 256 requests (one window of window_requests=256), the file has 3; "
                    f"prefix_eviction {NO_BLOCKS}): give another trace"), line


def test_a_malformed_trace_is_the_readers_line_before_any_environment_is_built(tmp_path, capsys, monkeypatch):
    """A --trace file with a bad field: the reader's one line (file, line, field), before any environment is
    built, with or without --envs (was the environment's refusal naming a scenario and '--envs')."""
    import envs

    def _no_build(*args, **kwargs):
        raise AssertionError("an environment was built before the --trace file was parsed")

    monkeypatch.setattr(envs.options, "build", _no_build)
    monkeypatch.setattr(lb, "run_scenario", _no_run)
    f = tmp_path / "bad.jsonl"
    f.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n'
                 '{"timestamp": 1000, "input_length": "x", "output_length": 5}\n')
    for named in ([], ["--envs", "routing"]):
        line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), *named, "--scenarios", "*/user:*",
                                   "--out", str(tmp_path / "out")])
        assert line == (f"python -m agents.leaderboard: error: --trace {f}: line 2, field 'input_length': expected an "
                        "integer, got 'x'"), line


def test_trace_unsuited_errors_keep_their_fields_through_pickling():
    """The environments' TraceUnsuited (and TooFewRequests, one of them) cross process boundaries pickled
    (subprocess vector envs, Ray): same message, needs, has and counts."""
    import pickle

    from envs.core.workload import TooFewRequests, TraceUnsuited

    err = TraceUnsuited("PrefixEviction: no ids", "prefix block ids", "has none")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.needs, back.has) == ("PrefixEviction: no ids", "prefix block ids", "has none")
    short = pickle.loads(pickle.dumps(TooFewRequests("trace 'a' has 3 requests", 3, 1024)))
    assert isinstance(short, TraceUnsuited) and isinstance(short, ValueError)
    assert (str(short), short.requests, short.window, short.needs, short.has) == (
        "trace 'a' has 3 requests", 3, 1024, "at least 1,024 requests (one window of window_requests=1024)", "has 3")
    unusable = lb.TraceUnusable("d/a.jsonl", [("routing/user:a.jsonl/x", "needs A, the file B"),
                                              ("routing/user:a.jsonl/y", "needs C, the file D")])
    assert str(pickle.loads(pickle.dumps(unusable))) == str(unusable) == (
        "--trace d/a.jsonl: no environment of this run can use it (routing needs A, the file B): give another trace")


def test_two_traces_that_would_share_scenario_ids_are_refused(tmp_path, capsys):
    """User-trace scenario ids name the file (``user:<name>``): the same file given twice, or two files of one
    name in different folders, gave the same ids to two traces' results; each is one line before any run."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    fa, fb = _hour_file(a / "t.jsonl"), _hour_file(b / "t.jsonl")
    out = str(tmp_path / "out")
    assert _the_error(capsys, ["--quick", "--envs", "kv_admission", "--trace", str(fa), "--trace", str(fb),
                               "--out", out]).endswith(
        f"--trace {fa} and --trace {fb}: both files are named t.jsonl, which names their scenarios "
        "(user:t.jsonl); give files with different names")
    assert _the_error(capsys, ["--quick", "--envs", "kv_admission", "--trace", str(fa), "--trace",
                               str(a / ".." / "a" / "t.jsonl"), "--out", out]).endswith(
        f"--trace {a / '..' / 'a' / 't.jsonl'}: given twice (as {fa} and {a / '..' / 'a' / 't.jsonl'})")
    assert not (tmp_path / "out").exists()
    ids = {sc.id for sc in scn.user_trace_scenarios([str(fa), str(_hour_file(b / "u.jsonl"))], ["kv_admission"])}
    assert any("user:t.jsonl" in i for i in ids) and any("user:u.jsonl" in i for i in ids)


def test_a_policy_file_of_another_environment_is_one_line_before_any_scenario_runs(tmp_path, capsys, monkeypatch):
    """A --policy file plays every single-agent scenario of the run: the KVAdmission-v0 zoo checkpoint with --envs
    routing (or in a run of every environment, at the first scenario after KVAdmission-v0's) played the scenarios
    before it, then ended in an ObservationRecordError traceback, exit 1."""
    from pathlib import Path

    monkeypatch.setattr(lb, "run", _no_run)
    path = Path(lb.__file__).parent / "zoo" / "kv_admission_dagger.zip"
    got = _the_error(capsys, ["--quick", "--no-progress", "--envs", "routing", "--policy", str(path),
                              "--out", str(tmp_path / "lb")])
    sc = lb.scenarios_for(["routing"])[0]
    assert got == (f"python -m agents.leaderboard: error: --policy {path}: trained on servegym/KVAdmission-v0's "
                   f"observation, not servegym/Routing-v0's (scenario {sc.id}; choose the file's environment with "
                   "--envs)"), got
    assert not (tmp_path / "lb").exists()


@pytest.mark.parametrize("make, says", [
    (lambda d: d / "missing.md", "cannot read it (No such file or directory)"),
    (lambda d: d, "cannot read it (Is a directory)"),
    (lambda d: (d / "plain.md", (d / "plain.md").write_text("no markers\n"))[0],
     f"no leaderboard section; add the two marker lines {rep.README_START!r} and {rep.README_END!r}"),
], ids=["missing", "directory", "no_markers"])
def test_a_readme_that_cannot_be_rewritten_is_one_line_before_any_scenario_runs(tmp_path, capsys, monkeypatch,
                                                                                 make, says):
    """--readme with no such file, a directory or no marker lines was a traceback (FileNotFoundError,
    IsADirectoryError, a two-line ValueError) after every scenario had run and the outputs were written."""
    monkeypatch.setattr(lb, "run", _no_run)
    readme = make(tmp_path)
    got = _the_error(capsys, ["--quick", "--no-progress", "--envs", "routing", "--readme", str(readme),
                              "--out", str(tmp_path / "lb")])
    assert got == f"python -m agents.leaderboard: error: --readme {readme}: {says}", got
    assert not (tmp_path / "lb").exists()


@pytest.mark.parametrize("extra, line", [
    (["--num-cpus", "4"], "--num-cpus 4: sizes the embedded Ray of --ray; without --ray the run is sequential"),
    (["--ray", "--num-cpus", "0"], "--num-cpus 0: must be >= 1"),
    (["--ray", "--num-cpus", "-2"], "--num-cpus -2: must be >= 1"),
    (["--address", "auto", "--num-cpus", "2"], "--num-cpus 2 --address auto: --num-cpus sizes the embedded Ray "
                                                 "only; a cluster has the CPUs its nodes were started with"),
])
def test_num_cpus_is_checked_before_any_scenario_runs(tmp_path, capsys, monkeypatch, extra, line):
    """--num-cpus without --ray was ignored and the whole run went sequential; 0 or a cluster's --address
    were refused only once Ray started (exit 1)."""
    monkeypatch.setattr(lb, "run", _no_run)
    got = _the_error(capsys, ["--quick", "--no-progress", "--out", str(tmp_path / "lb"), *extra])
    assert got == f"python -m agents.leaderboard: error: {line}", got


def test_a_selection_that_leaves_an_environment_without_a_scenario_is_refused(tmp_path, capsys):
    """--track transfer --envs Autoscale --quick (Autoscale's transfer scenarios are not quick) wrote an empty
    leaderboard and exited 0 without a word."""
    out = tmp_path / "o"
    line = _the_error(capsys, ["--track", "transfer", "--envs", "Autoscale", "--quick", "--out", str(out)])
    assert line.endswith("error: --envs Autoscale: no scenario left after --quick --track transfer "
                         "(python -m agents.leaderboard --help lists the ids)")
    line = _the_error(capsys, ["--track", "transfer", "--envs", "Autoscale", "KVAdmission", "--quick",
                               "--out", str(out)])  # KVAdmission keeps its quick transfer scenario
    assert "error: --envs Autoscale: no scenario left after --quick --track transfer" in line
    assert not out.exists()


def test_check_of_a_directory_that_does_not_exist_says_so(tmp_path, capsys):
    """--check /nonexistent listed leaderboard.json, .md, .html ... as missing files."""
    assert _the_error(capsys, ["--check", str(tmp_path / "nope")]).endswith(f"--check {tmp_path / 'nope'}: "
                                                                             "no such directory")
    (tmp_path / "f").write_text("")
    assert _the_error(capsys, ["--check", str(tmp_path / "f")]).endswith(f"--check {tmp_path / 'f'}: not a directory")


def test_a_team_or_policy_file_that_no_scenario_of_the_run_plays_is_refused(tmp_path, capsys):
    """--team plays only the multi-agent scenarios and a --policy file only the single-agent ones; given to a
    run without any (--envs routing --team ..., --envs multi --policy FILE), it was ignored without a word and
    the leaderboard written without it (exit 0)."""
    from agents.zoo import ZOO

    out = tmp_path / "lb"
    line = _the_error(capsys, ["--quick", "--envs", "routing", "--team", "router=jsq", "--out", str(out)])
    assert line.endswith("--team router=jsq: no multi-agent scenario in this run (teams play only "
                         "servegym/MultiCluster-v0's; add it with --envs)"), line
    f = str(ZOO["servegym/Routing-v0"])
    line = _the_error(capsys, ["--quick", "--envs", "multi", "--policy", f, "--out", str(out)])
    assert line.endswith(f"--policy {f}: no single-agent scenario in this run (a file plays only those; seat it "
                         f"in a team with --team ROLE={f})"), line
    assert not out.exists()


def test_a_trace_too_short_for_disaggregations_offline_search_is_refused_before_any_run(tmp_path, capsys):
    """A --trace file that Disaggregation-v0 plays whole (split=all) passed the check, then DistServe's offline
    search, which simulates the file's training part (first 70%), ended the run in a TraceUnsuited traceback
    (../shared/cases/burstgpt_zero_request.csv: 4 requests, 2 in the training part); now the check builds the
    scenario as that search does."""
    f = tmp_path / "five.jsonl"
    f.write_text("".join(json.dumps({"timestamp": t, "input_length": 500, "output_length": 50}) + "\n"
                         for t in (0, 1000, 8000, 9000, 10000)))
    line = _the_error(capsys, ["--quick", "--no-progress", "--trace", str(f), "--envs", "disaggregation",
                               "--out", str(tmp_path / "lb")])
    assert "refuses it: Disaggregation: trace" in line and "its training part (held_out_frac=0.3) has 2 requests" in line
    assert not (tmp_path / "lb").exists()
