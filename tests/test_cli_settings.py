"""CLI settings refused by name: a negative --seed (it was reported as a bad --env-kwargs or
--env/--policy: "expected non-negative integer"), and evaluate settings it would override silently."""

from __future__ import annotations

import pytest

from agents import evaluate, export


@pytest.mark.parametrize("main, args", [
    (evaluate.main, ["--policy", "vllm_fcfs", "--episodes", "1", "--env-kwargs", "load=1.1"]),
    (export.main, ["--policy", "zoo", "--onnx", "x.onnx", "--no-parity"]),
])
def test_negative_seed_is_a_one_line_usage_error_naming_seed(main, args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*args, "--seed", "-3"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("error: --seed -3: must be >= 0")


@pytest.mark.parametrize("args, says", [
    (["--split", "train", "--env-kwargs", "split=test"], "--split train --env-kwargs split=test: two different values of split"),
    (["--env-kwargs", "window_order=random"], "--env-kwargs window_order=random: the evaluation replays"),
])
def test_evaluate_refuses_settings_it_would_override(args, says, capsys):
    # --env-kwargs split won over --split, and window_order=random became sequential, both silently
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--policy", "vllm_fcfs", "--episodes", "1", *args])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err.strip().splitlines()[-1]
