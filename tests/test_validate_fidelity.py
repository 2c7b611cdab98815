"""Fidelity of the step-time model and the simulator, recomputed from the committed reference-engine
measurements (hwmodels/validate/data/h200): the model cannot drift from them unnoticed.

Bounds are the figures `python -m hwmodels.validate report` gives today (README, Fidelity) plus a
small margin; a change of the model that makes them worse fails here."""

from __future__ import annotations

import numpy as np
import pytest

import hwmodels
from hwmodels.errors import HwModelError
from hwmodels.profiles import get_profile, list_profiles
from hwmodels.validate.fit import fit_reference, iteration_errors
from hwmodels.validate.measured import load_runs

RUNS = load_runs()
LOAD_RUNS = [r for r in RUNS if r.kind == "load"]
# per-iteration MAPE bounds of the reference profile on the held-out load runs (measured: Azure
# 4.4-5.9%, Mooncake 5.5-12.2%)
ITER_MAPE_BOUND = {"azure_conv": 6.5, "mooncake_conv": 13.0}


def test_committed_runs_cover_both_windows_at_three_loads():
    loads = {(r.window, round(r.load, 2)) for r in LOAD_RUNS}
    assert loads == {(w, q) for w in ("azure_conv", "mooncake_conv") for q in (0.3, 0.6, 0.85)}
    for r in RUNS:
        assert all(len(t) == o for t, o in zip(r.token_s, r.output)), "every request finished with all its tokens"
        assert np.all(r.iter_s > 0) and np.all(np.asarray(r.it["graph"]) == 1.0)


@pytest.mark.parametrize("run", LOAD_RUNS, ids=lambda r: r.label)
def test_iteration_error_of_reference_profile(run):
    e = iteration_errors(run, "reference")
    assert np.mean(np.abs(e)) * 100 <= ITER_MAPE_BOUND[run.window]
    # and the model without the profile (calibration alone) is worse: the profile's terms matter
    assert np.mean(np.abs(iteration_errors(run, None))) > np.mean(np.abs(e))


def test_reference_profile_is_the_fit_of_the_capacity_runs():
    prof, _ = fit_reference([r for r in RUNS if r.kind == "capacity"], get_profile("reference"))
    committed = get_profile("reference")
    for k in ("overhead_s", "layer_overhead_s", "per_seq_overhead_s", "linear_scale", "prefill_attn_scale",
              "decode_kv_read_scale", "decode_longest_s_per_token_layer"):
        assert getattr(prof, k) == pytest.approx(getattr(committed, k), rel=2e-3), k


def test_straggler_and_padding_terms():
    ref = hwmodels.StepTimeModel("Llama-3.1-8B", "H200", profile="reference")
    vllm = hwmodels.StepTimeModel("Llama-3.1-8B", "H200", profile="vllm")
    # same KV read, one long sequence: slower with the straggler (32+ sequences: no split-KV cap)
    even = ref.iteration_time(0, 0, 40, 40 * 2000, longest_decode=2000)
    skew = ref.iteration_time(0, 0, 40, 40 * 2000, longest_decode=40000)
    assert skew > even * 1.2
    assert vllm.iteration_time(0, 0, 40, 80000, longest_decode=40000) == vllm.iteration_time(0, 0, 40, 80000, longest_decode=2000)
    # decode-only batches padded to multiples of 8: 9 and 16 sequences run the same linear layers
    b9, b16 = ref.breakdown(0, 0, 9, 9000), ref.breakdown(0, 0, 16, 9000)
    assert b9["linear"] == b16["linear"]
    for m, args in ((ref, (300, 5e4, 9, 9000, 3000)), (vllm, (0, 0, 13, 20000, 4000))):
        assert sum(m.breakdown(*args).values()) == pytest.approx(m.iteration_time(*args))


def test_profiles_catalogue_and_errors():
    assert {"reference", "vllm"} <= set(list_profiles())
    with pytest.raises(HwModelError, match="unknown engine profile 'vLLM-x'"):
        hwmodels.build_coeffs("Llama-3.1-8B", "H200", profile="vLLM-x")
    # no profile: neutral terms (no straggler, no padding) = the calibrated model alone
    c = hwmodels.build_coeffs("Llama-3.1-8B", "H200")
    assert c[hwmodels.COEFF_INDEX["DECODE_LONGEST_S_PER_TOKEN"]] == 0.0
    assert c[hwmodels.COEFF_INDEX["PAD_DECODE_MULTIPLE"]] == 1.0


def test_comm_calibration_is_fitted_on_the_nccl_measurements():
    from hwmodels.calibrate_fit import fit_comm

    eff, lat, stats = fit_comm()
    cal = hwmodels.default_calibration()
    assert cal.comm_eff == pytest.approx(eff, rel=1e-6) and cal.comm_latency_s == pytest.approx(lat, rel=1e-6)
    assert stats["mape"] < 12.0


def test_simulator_replay_of_one_load_run():
    from hwmodels.validate.compare import compare_run

    run = next(r for r in LOAD_RUNS if r.window == "azure_conv" and round(r.load, 2) == 0.6)
    out = compare_run(run, "reference")
    m = out["requests_metrics"]
    assert out["iterations_simulated"] == pytest.approx(out["iterations_measured"], rel=0.05)
    for metric, bound in (("ttft", 15.0), ("tpot", 6.0), ("e2e", 6.0)):
        assert abs(m[metric]["p50"]["err_pct"]) <= bound, metric


@pytest.mark.slow
def test_simulator_replay_of_every_load_run():
    from hwmodels.validate.compare import compare_all
    from hwmodels.validate.report import engine_summary

    s = engine_summary(compare_all())
    assert s["iteration_mape_pct"] <= 13.0
    assert s["request_p50_max_abs_err_pct"] <= 25.0 and s["request_p90_max_abs_err_pct"] <= 22.0
