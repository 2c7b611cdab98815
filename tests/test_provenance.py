"""Results record the code that made them (agents.provenance)."""

import re
import shutil
import subprocess

import pytest

from agents.provenance import ROOT, code_version


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
