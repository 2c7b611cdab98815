"""agents/time_train_grid.sh's job list, with a stand-in ``python`` that runs nothing (no training)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("bash", "flock", "taskset")),
                                reason="needs bash, flock and taskset")


def _grid(tmp_path, **env):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text("#!/bin/sh\nexit 0\n")
    (fake / "python").chmod(0o755)
    full = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "OUT": str(tmp_path / "out"), **env}
    return subprocess.run(["bash", "agents/time_train_grid.sh"], cwd=ROOT, env=full, capture_output=True, text=True)


def test_scaled_down_train_args_shorten_every_configuration(tmp_path):
    # prev's own --timesteps 300000 came after TRAIN_ARGS and won: the "scaled-down" test ran 300k steps
    r = _grid(tmp_path, TRAIN_ARGS="--timesteps 8192 --env-kwargs window_requests=64", SNAPSHOTS="4096", SEEDS="0")
    assert r.returncode == 0, r.stderr
    jobs = {line.split()[0]: line.split() for line in (tmp_path / "out" / "jobs_all.txt").read_text().splitlines()}
    for name in ("base_s0", "prev_s0"):
        args = jobs[name]
        last = len(args) - 1 - args[::-1].index("--timesteps")  # argparse: the last one given wins
        assert args[last + 1] == "8192", name
    assert "--snapshots" in jobs["base_s0"] and "--snapshots" not in jobs["prev_s0"]


def test_a_list_flag_in_both_train_args_and_a_configuration_is_refused(tmp_path):
    r = _grid(tmp_path, TRAIN_ARGS="--hyperparams n_epochs=3", SEEDS="0")
    assert r.returncode == 2
    assert "configuration prev both give --hyperparams" in r.stderr


def test_empty_snapshots_keep_none(tmp_path):
    r = _grid(tmp_path, SNAPSHOTS="", SEEDS="0")
    assert r.returncode == 0, r.stderr
    jobs = (tmp_path / "out" / "jobs_all.txt").read_text()
    assert "base_s0" in jobs and "--snapshots" not in jobs


@pytest.mark.parametrize("per", ["0", "abc", "1.5", "1 2", "999"])
def test_cores_per_run_outside_the_affinity_or_not_a_count_is_one_line(tmp_path, per):
    r = _grid(tmp_path, CORES_PER_RUN=per, SEEDS="0")
    assert r.returncode == 2
    n = len(os.sched_getaffinity(0))
    assert r.stderr.strip().splitlines() == [f"time_train_grid.sh: CORES_PER_RUN={per}: must be 1..{n}"]


@pytest.mark.parametrize("env, args, says", [
    ({"OUT": ""}, [], "time_train_grid.sh: OUT must name an output directory"),
    ({}, ["/nonexistent_old_tree"], "time_train_grid.sh: OLD_TREE /nonexistent_old_tree: no such directory"),
    ({"SEEDS": " "}, [], "time_train_grid.sh: SEEDS is empty (no run to time)"),  # ran the warm-up, then nothing
])
def test_bad_settings_are_one_line_exit_2_before_any_run(tmp_path, env, args, says):
    full = {**os.environ, "OUT": str(tmp_path / "out"), **env}
    r = subprocess.run(["bash", "agents/time_train_grid.sh", *args], cwd=ROOT, env=full, capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stderr.strip().splitlines()) == (2, [says])
    assert not (tmp_path / "out" / "warm_new.log").exists()
