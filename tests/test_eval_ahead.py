"""agents.eval_ahead: the heuristics' held-out evaluation in a worker, joined to the agent's part,
gives the report of one ``evaluate`` call over all the policies."""

from __future__ import annotations

import pytest

from agents.eval_ahead import EvalAhead, merge
from agents.evaluate import evaluate, report_json
from envs.kv_admission import env as kva

ENV = kva.ENV_ID
KW = {"window_requests": 64}


@pytest.mark.parametrize("workers", [1, 0])  # a worker process; none (one usable core): in this process
def test_worker_report_merged_is_the_report_of_one_call(workers):
    one = evaluate(ENV, ["vllm_fcfs", "sjf", "random"], "default", 2, 10_000, KW, "test", progress=False)
    first = evaluate(ENV, ["vllm_fcfs"], "default", 2, 10_000, KW, "test", progress=False)
    with EvalAhead(workers) as ahead:
        rest = ahead.submit(ENV, ["sjf", "random"], "default", 2, 10_000, KW, "test").result()
    assert report_json(merge(first, rest)) == report_json(one)  # byte for byte, key order included


def test_one_usable_core_starts_no_worker(monkeypatch):
    import agents.eval_ahead as ea

    monkeypatch.setattr(ea, "usable_cores", lambda: 1)
    with EvalAhead() as ahead:
        assert ahead._pool is None
    monkeypatch.setattr(ea, "usable_cores", lambda: 2)
    with EvalAhead() as ahead:
        assert ahead._pool is not None
    with pytest.raises(ValueError, match="workers must be 0 or 1, got 2"):
        EvalAhead(2)
    for bad in (True, 1.0, "1"):  # True and 1.0 were taken as one worker
        with pytest.raises(ValueError, match="workers must be 0 or 1"):
            EvalAhead(bad)


def test_merge_refuses_reports_of_other_scenarios():
    a = evaluate(ENV, ["vllm_fcfs"], "default", 1, 0, {**KW, "load": 1.1}, progress=False)
    b = evaluate(ENV, ["sjf"], "default", 1, 1, {**KW, "load": 1.1}, progress=False)
    with pytest.raises(ValueError, match="differ in 'seed'"):
        merge(a, b)


@pytest.mark.parametrize("workers", [1, 0])
def test_a_worker_error_is_raised_by_result(workers):
    with EvalAhead(workers) as ahead:
        fut = ahead.submit(ENV, ["no_such_policy"], "default", 1, 0, KW, "test")
        with pytest.raises(Exception, match="no_such_policy"):
            fut.result()


@pytest.mark.parametrize("module, says", [
    ("agents.capacity_search", "the search runs as python -m agents.evaluate --env ID --policy P --capacity"),
    ("agents.eval_ahead", "train.py runs it"),
])
def test_library_modules_run_as_commands_say_what_to_run(module, says):
    """`python -m agents.capacity_search ...` and `python -m agents.eval_ahead` exited 0 having done nothing."""
    import subprocess
    import sys
    from pathlib import Path

    r = subprocess.run([sys.executable, "-m", module, "--env", "Routing"], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 1, r
    assert lines[0].startswith(f"python -m {module}: not a command; ") and says in lines[0], lines
