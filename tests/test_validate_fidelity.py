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
from hwmodels.validate.fit import FITTED, fit_reference, iteration_errors
from hwmodels.validate.measured import load_runs, longest_prefill_context

RUNS = load_runs()
LOAD_RUNS = [r for r in RUNS if r.kind == "load"]
# per-iteration MAPE bounds of the reference profile on the held-out load runs (measured: Azure
# 2.2-3.1%, Mooncake 4.4-6.6%)
ITER_MAPE_BOUND = {"azure_conv": 3.5, "mooncake_conv": 7.2}


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
    for k in FITTED:
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


def test_split_kv_table_follows_flash_attention_heuristic():
    from hwmodels.profiles import fa2_num_splits, split_chunk_table

    # FlashAttention-2 num_splits_heuristic on 2 x 132 SMs, max_seqlen_k 87843 (687 blocks of 128):
    # 8 / 16 / 24 padded sequences x 8 KV heads split 4 / 2 / 4 ways, 32 fill the GPU (no split)
    assert [fa2_num_splits(d * 8, 264, 687) for d in (8, 16, 24, 32)] == [4, 2, 4, 1]
    assert split_chunk_table(get_profile("reference"), 8) == [22016.0, 44032.0, 22016.0, 0.0]
    assert split_chunk_table(get_profile("vllm"), 8) == [0.0] * 4
    ref = hwmodels.StepTimeModel("Llama-3.1-8B", "H200", profile="reference")
    # one 60k-token decode: 16 padded sequences split in 2 (chunk 44032), 24 in 4 (chunk 22016)
    b16 = ref.breakdown(0, 0, 16, 16 * 4000, longest_decode=60000)["attn_decode_straggler"]
    b24 = ref.breakdown(0, 0, 24, 24 * 4000, longest_decode=60000)["attn_decode_straggler"]
    assert b16 == pytest.approx(2 * b24)


def test_prefill_straggler_and_its_derivation_from_the_records():
    ref = hwmodels.StepTimeModel("Llama-3.1-8B", "H200", profile="reference")
    # a 47-token chunk at the end of an 87k prompt costs far more than its causal pairs say
    pairs = hwmodels.attn_pairs(47, 87683)
    assert ref.iteration_time(47, pairs, 0, 0, longest_prefill=87730) > 3 * ref.iteration_time(47, pairs, 0, 0)
    # longest prefill context: prompts 5, 3, 4 as one stream, iterations taking 4, 0, 6, 2 tokens
    got = longest_prefill_context(np.array([4.0, 0.0, 6.0, 2.0]), np.array([5, 3, 4]))
    assert got.tolist() == [4.0, 0.0, 5.0, 4.0]  # request 0 ends (5), 1 whole (3), 2 to 2; then 2 to 4
    with pytest.raises(ValueError, match="preemption"):
        longest_prefill_context(np.array([4.0]), np.array([5]))
    # against the committed runs: every iteration's longest prefill is at least its largest chunk share
    for r in RUNS:
        lp, p = r.it["longest_prefill_context"], r.it["prefill_tokens"]
        assert np.all((lp > 0) == (p > 0)) and np.all(lp <= r.prompt.max())


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
    for metric, bound in (("ttft", 7.0), ("tpot", 4.0), ("e2e", 4.0)):  # measured +4.8 / +1.6 / +1.5%
        assert abs(m[metric]["p50"]["err_pct"]) <= bound, metric


@pytest.mark.slow
def test_simulator_replay_of_every_load_run():
    from hwmodels.validate.compare import compare_all
    from hwmodels.validate.report import engine_summary

    s = engine_summary(compare_all())
    assert s["iteration_mape_pct"] <= 7.2  # measured 6.6 (Mooncake 0.6)
    assert s["request_p50_max_abs_err_pct"] <= 15.0 and s["request_p90_max_abs_err_pct"] <= 22.0  # 13.7, 20.5


def test_simulator_schedule_is_the_engine_schedule(monkeypatch):
    """Given the measured duration of every iteration, envs.core's scheduler reproduces the engine's
    every iteration (prefill tokens, decodes, KV read) and every request's first-token time: request-level
    errors come from the step-time model, not from a difference in scheduling semantics."""
    import envs.core.replica as R
    from envs.core import state as S
    from hwmodels.validate.compare import _engine

    run = next(r for r in LOAD_RUNS if r.window == "azure_conv" and round(r.load, 2) == 0.85)
    it, seen = run.it, []

    def measured(coeffs, p, a, d, k, lng, lpf):  # the iteration's measured wall time, to the next start
        j = len(seen)
        seen.append((p, d, k, lpf))
        return (it["start_s"][j + 1] if j + 1 < len(run.iter_s) else it["end_s"][j]) - it["start_s"][j]

    monkeypatch.setattr(R, "step_time", measured)
    eng, n = _engine(run, "reference"), len(run.arrival_s)
    wl = S.Workload(arrival_s=run.arrival_s[None, :].copy(), prompt=run.prompt[None, :].astype(np.int32),
                    output=run.output[None, :].astype(np.int32), pred_bucket=np.zeros((1, n), np.int8),
                    n_requests=np.array([n], np.int32), chain_ids=np.full((1, n, 1), -1, np.int64),
                    chain_len=np.zeros((1, n), np.int16), failed=np.zeros((1, n), np.bool_))
    st = S.allocate(1, 1, n, n, 1)
    R.reset_env_state(st, 0, 0, 1.0)
    R.reset_replica(st, eng, 0, 0)
    now, nxt = 0.0, 0
    while nxt < n or st.n_running[0, 0] + st.n_queued[0, 0] > 0:
        while nxt < n and run.arrival_s[nxt] <= now:
            R.enqueue(st, wl, eng, 0, 0, nxt)
            nxt += 1
        dt = 0.0
        if st.n_running[0, 0] + st.n_queued[0, 0] > 0:
            dt = R.run_iteration.py_func(st, wl, eng, 0, 0, eng.max_seqs, int(run.settings["budget"]), False,
                                         R.ORDER_FCFS, now)
        now = now + dt if dt > 0 else float(run.arrival_s[nxt])
    got = np.array(seen)
    want = np.c_[it["prefill_tokens"], it["decode_seqs"], it["decode_kv_tokens"], it["longest_prefill_context"]]
    assert got.shape == want.shape and np.array_equal(got, want)
    ttft = run.request_metrics()["ttft"]
    assert np.max(np.abs(st.ttft[0] - ttft)) < 1e-4  # seconds: the records' rounding


def test_the_engine_repeats_itself_so_the_model_errors_are_not_noise():
    """The Mooncake window replayed again at the same rates in a later session (data/h200_repeat):
    every measured TTFT / TPOT / E2E p50 and p90 within 2% of the original run (measured: at most
    1.9% and 1.7%), far inside the model's worst errors (13.7% at p50, 20.5% at p90)."""
    from hwmodels.validate.measured import REPEAT_DIR
    from hwmodels.validate.report import repeat_spread

    repeats = load_runs(REPEAT_DIR)
    s = repeat_spread(RUNS, repeats)
    assert len(s["engine_repeat_runs"]) == 4 and {round(r["load"], 2) for r in s["engine_repeat_runs"]} == {0.6, 0.85}
    assert s["engine_repeat_p50_max_abs_diff_pct"] <= 2.0 and s["engine_repeat_p90_max_abs_diff_pct"] <= 2.0
    with pytest.raises(ValueError, match="no original run"):
        repeat_spread([r for r in RUNS if r.window != "mooncake_conv"], repeats)
