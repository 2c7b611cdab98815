"""Results record the code that made them (agents.provenance)."""

import re
import shutil
import subprocess

import pytest

from agents import provenance
from agents.provenance import ROOT, code_version, platform_record


@pytest.fixture(autouse=True)
def _no_named_commit(monkeypatch):
    monkeypatch.delenv("SERVEGYM_COMMIT", raising=False)


def test_code_version_outside_git_is_none(tmp_path):
    assert code_version(tmp_path) == {"commit": None, "dirty": None}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs a git checkout of servegym and the git command")
def test_code_version_is_head_and_sees_edits(tmp_path):
    v = code_version()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", v["commit"]) and v["commit"] == head
    # a fresh repository: clean after its commit, dirty once a tracked file changes
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    run("init", "-q")
    (tmp_path / "f").write_text("a")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "f").write_text("b")
    assert code_version(tmp_path)["dirty"] is True


def test_leaderboard_json_records_the_commit():
    from agents.leaderboard import build_report

    report = build_report([], "python -m agents.leaderboard", quick=True)
    assert report["code"] == code_version()
    assert report["platform"] == platform_record()


def test_platform_record_names_the_software_and_cpu(monkeypatch):
    """What a learned agent's score may depend on besides the commit: versions of the numeric packages (None for
    one not installed), the Python version, the CPU."""
    import importlib.metadata
    import platform

    monkeypatch.setattr(provenance, "PLATFORM_PACKAGES", ("numpy", "torch", "no-such-package-servegym"))
    rec = platform_record()
    assert rec["python"] == platform.python_version() and rec["machine"] == platform.machine()
    assert rec["packages"] == {"numpy": importlib.metadata.version("numpy"),
                               "torch": importlib.metadata.version("torch"), "no-such-package-servegym": None}
    if provenance.Path("/proc/cpuinfo").exists():
        names = [ln.split(":", 1)[1].strip() for ln in provenance.Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        assert rec["cpu"] == (names[0] if names else (platform.processor() or None))


def test_named_commit_overrides_git_and_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVEGYM_COMMIT", "a" * 40)
    assert code_version(tmp_path) == {"commit": "a" * 40, "dirty": None, "source": "SERVEGYM_COMMIT"}
    monkeypatch.setenv("SERVEGYM_COMMIT", "8a377e9")
    with pytest.raises(ValueError, match="SERVEGYM_COMMIT='8a377e9': expected a 40-hex"):
        code_version(tmp_path)


@pytest.mark.parametrize("module, argv", [
    ("agents.train", ["--env", "KVAdmission", "--timesteps", "1"]),
    ("agents.train_multi", ["--steps", "64"]),
    ("agents.leaderboard", ["--scenarios", "multi_cluster/mooncake*"]),
])
def test_a_bad_commit_variable_stops_a_cli_before_it_runs(module, argv, monkeypatch, tmp_path, capsys):
    # was: a ValueError traceback when the run record was written, after the whole run
    import importlib

    monkeypatch.setenv("SERVEGYM_COMMIT", "abc")
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main([*argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "SERVEGYM_COMMIT='abc': expected a 40-hex" in err[-1]
    assert not (tmp_path / "o").exists()


def test_train_takes_the_commit_once_before_training(monkeypatch, tmp_path):
    # the run record holds the commit read at start (the one that trained), from one git call, not two
    import json

    import agents.train as train

    calls = []
    monkeypatch.setattr(train, "code_version", lambda: calls.append(1) or {"commit": "c" * 40, "dirty": False})
    assert train.main(["--env", "KVAdmission", "--timesteps", "64", "--n-envs", "2", "--no-eval", "--no-progress",
                       "--out", str(tmp_path / "o"), "--hyperparams", "n_steps=32", "batch_size=64"]) == 0
    assert len(calls) == 1
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["code"]["commit"] == "c" * 40 and run["platform"] == train.platform_record()
