"""Output paths a CLI cannot write are usage errors (one line naming the option, exit 2) before any
run, not a traceback at the write after it (evaluate --json, export --onnx, leaderboard --out)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents import cli


def test_check_output_names_the_option_and_why(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cli.check_output(tmp_path / "new" / "deeper" / "r.json", "--json")  # created later: fine
    cli.check_output(tmp_path / "lb", "--out", directory=True)
    cli.check_output(blocker, "--json")  # an existing file is overwritten
    for path, directory, msg in ((blocker / "r.json", False, f"--x {blocker / 'r.json'}: {blocker} is not a directory"),
                                 (blocker, True, f"--x {blocker}: exists and is not a directory"),
                                 (tmp_path, False, f"--x {tmp_path}: exists and is a directory")):
        with pytest.raises(cli.UsageError) as err:
            cli.check_output(path, "--x", directory=directory)
        assert str(err.value) == msg


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_directory_no_file_can_be_created_in_is_refused_even_for_root(tmp_path):
    # os.access() answers yes to root for /proc; the check creates (and removes) a file there instead
    with pytest.raises(cli.UsageError, match=r"^--json /proc/r.json: /proc is not writable \("):
        cli.check_output(Path("/proc/r.json"), "--json")
    cli.check_output(tmp_path / "r.json", "--json")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


@pytest.mark.parametrize("module, args, msg", [
    ("agents.evaluate", ["--env", "servegym/PrefixEviction-v0", "--policy", "lru", "--episodes", "1",
                         "--json", "{B}/r.json"], "--json {B}/r.json: {B} is not a directory"),
    ("agents.export", ["--env", "servegym/PrefixEviction-v0", "--policy", "zoo", "--onnx", "{B}/x.onnx"],
     "--onnx {B}/x.onnx: {B} is not a directory"),
    ("agents.leaderboard", ["--scenarios", "prefix_eviction/*", "--out", "{B}"],
     "--out {B}: exists and is not a directory"),
])
def test_clis_refuse_an_unwritable_output_before_running(module, args, msg, tmp_path, capsys):
    import importlib

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main([x.replace("{B}", str(blocker)) for x in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].endswith(msg.replace("{B}", str(blocker))), err


def test_bench_json_that_cannot_be_written_is_refused_before_the_benchmark(tmp_path, capsys):
    """``python -m envs.bench --json BLOCKED/x.json`` ran the whole benchmark, then ended in a
    NotADirectoryError traceback at the write; its ``--json`` is checked when parsed now
    (``envs.options.output_file_arg``), for every environment's benchmark."""
    from envs import bench

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for env in ("Routing", "KVAdmission"):
        with pytest.raises(SystemExit) as exit_:
            bench.main(["--env", env, "--json", str(blocker / "x.json")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1, err
        assert err[0].endswith(f"argument --json: {blocker / 'x.json'}: {blocker} is not a directory"), err
    import importlib

    for module in ("envs.soak", "agents.autoscale_fidelity", "agents.bench_policy"):  # the same --json type
        with pytest.raises(SystemExit) as exit_:
            importlib.import_module(module).main(["--json", str(blocker / "x.json")])
        err = capsys.readouterr().err.strip().splitlines()
        # envs.soak's plain argparse parser prints its usage above the error line
        assert exit_.value.code == 2 and (len(err) == 1 or module == "envs.soak"), (module, err)
        assert "Traceback" not in "\n".join(err) and err[-1].endswith(f"argument --json: {blocker / 'x.json'}: {blocker} is not a directory"), err
