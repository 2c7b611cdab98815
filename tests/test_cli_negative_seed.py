"""A negative --seed is named as such by the CLIs (it was reported as a bad --env-kwargs or
--env/--policy: "expected non-negative integer")."""

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
