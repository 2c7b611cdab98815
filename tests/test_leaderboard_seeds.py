"""agents.leaderboard_seeds: the seed table on a hand-built leaderboard JSON, its errors, and the
README's seed tables as the command's output on the committed runs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from agents import leaderboard_seeds as ls

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ["a/s0.zip", "a/s1.zip", "a/s2.zip"]


def _row(scenario: str, policy: str, value: float, **metrics: float) -> dict:
    return {"scenario": scenario, "env": "test/Env-v0", "policy": policy, "rank": 1, "main_metric": "m",
            "main": {"value": value, "ci95": [value, value]}, "metrics": {"m": value, **metrics}}


def _scenario(sid: str, higher: bool = True, oracles: tuple = ("oracle",), bound: str | None = "oracle") -> dict:
    return {"id": sid, "env": "test/Env-v0", "scoring": {
        "main_metric": "m", "higher_is_better": higher, "naive": "naive", "bound": bound,
        "bound_value": None if bound else 1.0, "oracles": list(oracles), "beside": []}}


def _report() -> dict:
    a, b = "env/tr/llama3.1-8b-h100/load1/v1", "env/transfer/fam-v1/llama3.1-8b-h100x8/load2/v2"
    rows = [
        # a: the oracle and random beat every heuristic, and so does a learned team: none counts.
        _row(a, "a/s0.zip", 0.5, lat_s=2.0), _row(a, "a/s1.zip", 0.6, lat_s=4.0), _row(a, "a/s2.zip", 0.8, lat_s=6.0),
        _row(a, "oracle", 0.99, lat_s=0.1), _row(a, "random", 0.95, lat_s=0.2), _row(a, "zoo", 0.9, lat_s=0.3),
        _row(a, "router=zoo,scaler=hpa", 0.97, lat_s=0.3), _row(a, "other/x.onnx", 0.96, lat_s=0.3),
        _row(a, "naive", 0.1, lat_s=9.0), _row(a, "sjf", 0.7, lat_s=1.5), _row(a, "fcfs", 0.65, lat_s=1.0),
        # b: two heuristics tied at the best value, both named.
        _row(b, "a/s0.zip", 0.9, lat_s=1.0), _row(b, "a/s1.zip", 0.9, lat_s=1.0), _row(b, "a/s2.zip", 0.9, lat_s=1.0),
        _row(b, "oracle", 1.0, lat_s=0.5), _row(b, "naive", 0.2, lat_s=3.0), _row(b, "sjf", 0.8, lat_s=2.5),
        _row(b, "fcfs", 0.8, lat_s=1.25),
    ]
    return {"command": "test", "version": 2, "quick": False, "scenarios": [_scenario(a), _scenario(b)],
            "rows": rows}


def _write(tmp_path: Path, report: dict) -> Path:
    path = tmp_path / "leaderboard.json"
    path.write_text(json.dumps(report))
    return path


def test_rows_give_mean_t_interval_best_heuristic_and_difference():
    rows = ls.seed_rows(_report(), SEEDS, ["lat_s"])
    a, b = rows
    x = np.array([0.5, 0.6, 0.8])
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert a.agent == [0.5, 0.6, 0.8]
    assert a.seed["mean"] == pytest.approx(x.mean())
    assert a.seed["ci95"] == pytest.approx([x.mean() - half, x.mean() + half])
    assert a.best == ["sjf"] and a.best_value == 0.7  # not oracle, random, zoo, a team with zoo, a file
    assert a.difference == pytest.approx(x.mean() - 0.7)
    assert a.beside["lat_s"] == (pytest.approx(4.0), [1.5])
    assert b.best == ["fcfs", "sjf"] and b.best_value == 0.8
    assert b.seed["ci95"] == pytest.approx([0.9, 0.9])  # equal seeds: a zero-width interval
    assert b.beside["lat_s"] == (pytest.approx(1.0), [1.25, 2.5])


def test_lower_is_better_picks_the_smallest_heuristic():
    rep = _report()
    for sc in rep["scenarios"]:
        sc["scoring"]["higher_is_better"] = False
    a, b = ls.seed_rows(rep, SEEDS)
    assert a.best == ["naive"] and a.best_value == 0.1  # the naive reference is a heuristic like any
    assert b.best == ["naive"]


def test_metric_ranks_by_another_metric_of_the_rows():
    """--metric (ExpertPlacement: normalized_score counts migration, the main metric does not)."""
    a, b = ls.seed_rows(_report(), SEEDS, metric=("lat_s", False))
    assert a.main_metric == "lat_s" and not a.higher_is_better
    assert a.agent == [2.0, 4.0, 6.0] and a.best == ["fcfs"] and a.best_value == 1.0  # sjf's 1.5, naive's 9
    assert b.best == ["fcfs"] and b.best_value == 1.25
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        ls.seed_rows(_report(), SEEDS, metric=("nope", True))


def test_markdown_cells(tmp_path):
    md, data = ls.table_for([str(_write(tmp_path, _report())), "--agent", *SEEDS, "--beside", "lat_s",
                             "--seeds", "3", "4", "5", "--label", "ppo"])
    lines = md.splitlines()
    assert lines[0] == ("| scenario | ppo, seeds 3 / 4 / 5 | mean [95% t interval] | best heuristic | ppo − best "
                        "| lat ppo (mean) / best (s) |")
    lo, hi = data["rows"][0]["ci95"]
    assert lines[2] == (f"| tr/llama3.1-8b-h100/load1/v1 | 0.500 / 0.600 / 0.800 | 0.633 [{lo:.3f}, {hi:.3f}] | sjf 0.700 | -0.067 "
                        f"| 4.00 / 1.50 |")
    assert lines[3] == ("| transfer/fam-v1/llama3.1-8b-h100x8/load2/v2 | 0.900 / 0.900 / 0.900 | 0.900 [0.900, 0.900] "
                        "| fcfs, sjf 0.800 | +0.100 | 1.00 / 1.25, 2.50 |")
    assert data["rows"][1]["best_heuristic"] == ["fcfs", "sjf"] and data["seeds"] == ["3", "4", "5"]


def test_rows_keep_the_model_gpu_part_only_where_the_table_mixes_them():
    report = _report()  # its two scenarios run on different model/GPU parts
    assert [r.short for r in ls.seed_rows(report, SEEDS)] == [
        "tr/llama3.1-8b-h100/load1/v1", "transfer/fam-v1/llama3.1-8b-h100x8/load2/v2"]
    b = "env/transfer/fam-v1/llama3.1-8b-h100x8/load2/v2"
    one = dict(report, scenarios=[s for s in report["scenarios"] if s["id"] == b],
               rows=[r for r in report["rows"] if r["scenario"] == b])
    assert [r.short for r in ls.seed_rows(one, SEEDS)] == ["transfer/fam-v1/load2/v2"]


def test_short_id_drops_the_environment_and_the_model_gpu_part():
    assert ls.short_id("kv_admission/azure_conv/llama3.1-8b-h100/mlperf_server/load1.3/v2") == \
        "azure_conv/mlperf_server/load1.3/v2"
    assert ls.short_id("routing/transfer/agentic-v1/llama3.1-8b-h100x8/load2.0/v2") == "transfer/agentic-v1/load2.0/v2"
    with pytest.raises(ValueError, match="not ENV/"):
        ls.short_id("env/trace/v1")


def test_a_scenario_missing_a_seed_is_left_out_with_a_note():
    rep = _report()
    rep["rows"] = [r for r in rep["rows"] if not (r["policy"] == "a/s2.zip" and "transfer" in r["scenario"])]
    notes: list[str] = []
    rows = ls.seed_rows(rep, SEEDS, notes=notes)
    assert [r.short for r in rows] == ["tr/load1/v1"]
    assert len(notes) == 1 and "no row for a/s2.zip" in notes[0]


@pytest.mark.parametrize("mutate, args, match", [
    (None, ["--agent", "a/s0.zip", "a/nope.zip"], "policy 'a/nope.zip' is in no row"),
    (None, ["--agent", *SEEDS, "--beside", "ttft_p99_s"], "unknown metric 'ttft_p99_s'"),
    (None, ["--agent", "a/s0.zip", "a/s0.zip"], "given twice"),
    (None, ["--agent", *SEEDS, "--seeds", "0", "1"], "--seeds gives 2 seeds for 3"),
    # an unknown --metric was reported as --beside; a seed named twice and --lower-is-better without
    # --metric were accepted (the latter ignored)
    (None, ["--agent", *SEEDS, "--metric", "nosuch"], "unknown metric 'nosuch' \\(--metric\\)"),
    (None, ["--agent", *SEEDS, "--seeds", "0", "0", "1"], "--seeds 0 0 1: a seed named twice"),
    (None, ["--agent", *SEEDS, "--lower-is-better"], "--lower-is-better: only with --metric"),
    (lambda r: r.pop("rows"), ["--agent", *SEEDS], "not a leaderboard JSON \\(no list 'rows'\\)"),
    (lambda r: r["rows"][0]["main"].update(value=None), ["--agent", *SEEDS], "rows\\[0\\].*not a finite number"),
    (lambda r: r["scenarios"][0]["scoring"].pop("oracles"), ["--agent", *SEEDS], "scoring has no 'oracles'"),
])
def test_errors_name_the_file_and_what_is_wrong(tmp_path, capsys, mutate, args, match):
    rep = _report()
    if mutate:
        mutate(rep)
    path = _write(tmp_path, rep)
    with pytest.raises(ValueError, match=match):
        ls.table_for([str(path), *args])
    with pytest.raises(SystemExit) as exc:
        ls.main([str(path), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and re.search(match, err)
    assert err.startswith("python -m agents.leaderboard_seeds: error: ")
    assert str(path) in err or "--seeds" in err or "--lower-is-better" in err


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=f"{bad}: not JSON"):
        ls.load(bad)
    with pytest.raises(ValueError, match="no such file"):
        ls.load(tmp_path / "absent.json")
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="top level is list"):
        ls.load(bad)


def test_json_output_holds_the_table_numbers(tmp_path, capsys):
    out = tmp_path / "seeds.json"
    ls.main([str(_write(tmp_path, _report())), "--agent", *SEEDS, "--json", str(out)])
    data = json.loads(out.read_text())
    assert capsys.readouterr().out.startswith("| scenario |")
    assert [r["best_heuristic"] for r in data["rows"]] == [["sjf"], ["fcfs", "sjf"]]
    assert data["rows"][0]["mean"] == pytest.approx(np.mean([0.5, 0.6, 0.8]))


# the documents whose seed tables are checked: the README and each environment's README (earlier agents)
DOCS = [ROOT / "README.md", *sorted((ROOT / "envs").glob("*/README.md"))]


def _readme_commands() -> list[tuple[str, str]]:
    """(command, the document's text after its code block) for every seed-table command in ``DOCS``."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        found = re.findall(r"```\n(python -m agents\.leaderboard_seeds [^\n]*)\n```\n\n", text)
        out += [(cmd, text.split(f"```\n{cmd}\n```\n\n", 1)[1]) for cmd in found]
    return out


def test_readme_seed_tables_are_the_commands_output(monkeypatch):
    commands = _readme_commands()
    assert {shlex.split(c)[3] for c, _ in commands} == {
        "agents/zoo/results/kv_admission_mixture_seeds.json", "agents/zoo/results/routing_dagger_seeds.json",
        "agents/zoo/results/disaggregation_seeds.json", "agents/zoo/results/kv_admission_dagger_seeds.json",
        "agents/zoo/results/prefix_eviction_short_think_clip2_seeds.json", "agents/zoo/results/multi_team_seeds.json",
        "agents/zoo/results/expert_placement_portable_seeds/lb0.json",
        "agents/zoo/results/kv_admission_dagger_azure_code_seeds.json",
        "agents/zoo/results/kv_admission_dagger98k_seeds.json", "agents/zoo/results/kv_admission_relcount_hw_seeds.json",
        "agents/zoo/results/kv_admission_dagger_hw_oldobs.json", "agents/zoo/results/kv_admission_relcount_1engine_seeds/lb0.json",
        "agents/zoo/results/autoscale_ppo_seeds.json", "agents/zoo/results/autoscale_dagger_ppo_seeds.json",
        "agents/zoo/results/autoscale_hpa_residual_seeds.json"}
    monkeypatch.chdir(ROOT)
    for cmd, after in commands:
        md, _ = ls.table_for(shlex.split(cmd)[3:])
        assert after.startswith(md + "\n"), f"table after `{cmd}` is not its output; run it and paste"


def _split(tmp_path: Path, report: dict, commits: tuple[str, str] = ("c1", "c1")) -> list[Path]:
    """``report`` as two leaderboard JSONs of one run split by scenario (one scenario each)."""
    paths = []
    for k, (sc, commit) in enumerate(zip(report["scenarios"], commits)):
        part = {**report, "scenarios": [sc], "rows": [r for r in report["rows"] if r["scenario"] == sc["id"]],
                "code": {"commit": commit}}
        paths.append(tmp_path / f"part{k}.json")
        paths[-1].write_text(json.dumps(part))
    return paths


def test_a_run_split_by_scenario_gives_the_table_of_the_whole_run(tmp_path, capsys):
    whole = _write(tmp_path, _report())
    ls.main([str(whole), "--agent", *SEEDS])
    want = capsys.readouterr().out
    parts = _split(tmp_path, _report())
    ls.main([*map(str, parts), "--agent", *SEEDS])
    got = capsys.readouterr()
    assert got.out == want and "commits" not in got.err
    ls.main([*map(str, _split(tmp_path, _report(), ("c1", "c2"))), "--agent", *SEEDS])
    assert "note: the 2 files come from 2 commits: c1, c2" in capsys.readouterr().err


def test_a_scenario_in_two_files_is_an_error(tmp_path):
    part = _split(tmp_path, _report())[0]
    copy = tmp_path / "copy.json"
    copy.write_text(part.read_text())
    with pytest.raises(ValueError, match=f"^{copy}: scenario env/tr/llama3.1-8b-h100/load1/v1 is also in {part}"):
        ls.load_many([part, copy])
    with pytest.raises(SystemExit) as err:
        ls.main([str(part), str(tmp_path / "absent.json"), "--agent", *SEEDS])
    assert err.value.code == 2


def test_split_parts_that_are_not_one_run_are_errors(tmp_path):
    part, other = _split(tmp_path, _report())
    again = tmp_path / ".." / tmp_path.name / "part0.json"  # the same file by another path
    with pytest.raises(ValueError, match="^" + re.escape(f"{again}: given twice (also as {part})")):
        ls.load_many([part, again])
    with pytest.raises(ValueError, match=f"^{tmp_path}: is a directory"):
        ls.load_many([part, tmp_path])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**_report(), "scenarios": [], "rows": []}))
    with pytest.raises(ValueError, match=f"^{empty}: holds no scenario"):
        ls.load_many([part, empty])
    other.write_text(json.dumps({**json.loads(other.read_text()), "quick": True}))
    with pytest.raises(ValueError, match=f"^{other}: quick is True but False in {part}"):
        ls.load_many([part, other])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scenarios": [1], "rows": []}))
    with pytest.raises(ValueError, match=f"^{bad}: scenarios\\[0\\] is a int, expected an object"):
        ls.load(bad)
    for argv in ([str(part), str(tmp_path)], [str(part), str(part)]):
        with pytest.raises(SystemExit) as err:
            ls.main([*argv, "--agent", *SEEDS])
        assert err.value.code == 2


def test_a_json_path_that_cannot_be_written_is_a_one_line_error(tmp_path, capsys):
    src = _write(tmp_path, _report())
    (tmp_path / "afile").write_text("")
    for out, says in ((tmp_path, "exists and is a directory"), (tmp_path / "afile" / "x.json", "is not a directory")):
        with pytest.raises(SystemExit) as err:
            ls.main([str(src), "--agent", *SEEDS, "--json", str(out)])
        msg = capsys.readouterr().err
        assert err.value.code == 2 and f"--json {out}: " in msg and says in msg and msg.count("\n") == 1
