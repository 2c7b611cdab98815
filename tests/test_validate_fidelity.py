"""Fidelity of the step-time model and the simulator, recomputed from the committed reference-engine
measurements (hwmodels/validate/data/h200): the model cannot drift from them unnoticed.

Bounds are the figures `python -m hwmodels.validate report` gives today (README, Fidelity) plus a
small margin; a change of the model that makes them worse fails here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hwmodels
import hwmodels.validate
from hwmodels.errors import HwModelError
from hwmodels.profiles import get_profile, list_profiles
from hwmodels.validate.fit import FITTED, fit_reference, iteration_errors
from hwmodels.validate.measured import SCHEDULER_ORDER_DIR, load_runs, longest_prefill_context

RUNS = load_runs()
REPORT = json.loads((Path(hwmodels.validate.__file__).parent / "data" / "report.json").read_text())
LOAD_RUNS = [r for r in RUNS if r.kind == "load"]
# per-iteration MAPE bounds of the reference profile on the held-out load runs: issue 15's target,
# 5% (measured: Azure 3.0-3.9%, Mooncake 2.7-3.6%)
ITER_MAPE_BOUND = {"azure_conv": 5.0, "mooncake_conv": 5.0}


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
    """The committed profile is what `fit` gives on the capacity runs of both sessions (FIT_DIRS)."""
    from hwmodels.validate.fit import FIT_DIRS

    train = [r for d in FIT_DIRS for r in load_runs(d) if r.kind == "capacity"]
    assert len(train) == 6
    prof, _ = fit_reference(train, get_profile("reference"))
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
    for metric, bound in (("ttft", 5.0), ("tpot", 5.0), ("e2e", 6.0)):  # measured +3.5 / +3.5 / +4.7%
        assert abs(m[metric]["p50"]["err_pct"]) <= bound, metric


@pytest.mark.slow
def test_simulator_replay_of_every_load_run():
    from hwmodels.validate.compare import compare_all
    from hwmodels.validate.report import engine_summary

    s = engine_summary(compare_all())
    # issue 15's targets: iteration MAPE <= 5% at every load, p50 within 10%, p90 within 15%
    assert s["iteration_mape_pct"] <= 5.0  # measured 3.91 (Azure 0.6)
    assert s["request_p50_max_abs_err_pct"] <= 10.0 and s["request_p90_max_abs_err_pct"] <= 15.0  # 8.49, 10.68
    # the committed report (README's table) is what the data give today
    for k in ("iteration_mape_pct", "iteration_mape_floor_pct", "request_p50_max_abs_err_pct",
              "request_p90_max_abs_err_pct"):
        assert s[k] == pytest.approx(REPORT[k], abs=1e-6), k


def test_committed_report_iteration_errors_and_floors_recomputed():
    """report.json's per-run iteration MAPE and floor are the committed data's (fast: no replay); the
    floor (hwmodels/validate/floor.py) stays under the model's MAPE on every run and is small: most of
    the error is the model's (measured floors 0.2-0.8%, MAPE 2.7-3.9%)."""
    from hwmodels.validate.floor import iteration_floor

    rows = {(r["window"], round(r["load"], 2)): r for r in REPORT["engine_runs"]}
    assert len(rows) == len(LOAD_RUNS)
    floors = []
    for run in LOAD_RUNS:
        row = rows[(run.window, round(run.load, 2))]
        mape = float(np.mean(np.abs(iteration_errors(run, "reference"))) * 100)
        floor = float(np.mean(iteration_floor(run)) * 100)
        assert mape == pytest.approx(row["iteration_mape_pct"], abs=1e-6), run.label
        assert floor == pytest.approx(row["iteration_mape_floor_pct"], abs=1e-6), run.label
        assert 0.0 < floor < 0.5 * mape, run.label
        floors.append(floor)
    assert max(floors) == pytest.approx(REPORT["iteration_mape_floor_pct"], abs=1e-6)
    # Azure 0.3: 0.82%; in the scheduler's decode order Mooncake 0.6 had 1.25%, the slot effect
    assert 0.5 < REPORT["iteration_mape_floor_pct"] < 1.0


def test_iteration_floor_on_known_groups():
    from types import SimpleNamespace

    from hwmodels.validate.floor import iteration_floor, shape_groups, weighted_median

    # 1/t weights: the best single time for {21, 27} is 21 (errors 0 and 6/27), not the midpoint
    assert weighted_median(np.array([27.0, 21.0])) == 21.0
    assert weighted_median(np.array([20.0, 21.0, 27.0])) == 21.0
    with pytest.raises(ValueError, match="finite times > 0"):
        weighted_median(np.array([1.0, 0.0]))
    # iterations 0-2: same graph, loads within 1% -> one group; 3: another graph; 4: KV 10% more
    n = 5
    it = {"pad_decode": np.array([16, 16, 16, 24, 16.0]), "pad_prefill": np.zeros(n), "graph": np.ones(n),
          "prefill_tokens": np.zeros(n), "prefill_attn_pairs": np.zeros(n),
          "decode_kv_tokens": np.array([95500, 96000, 96600, 95500, 105000.0]),
          "longest_decode_context": np.full(n, 28200.0), "longest_prefill_context": np.zeros(n)}
    t = np.array([0.027, 0.0207, 0.027, 0.027, 0.0207])
    g = shape_groups(it, 0.02)
    assert g[0] == g[1] == g[2] and len({g[0], g[3], g[4]}) == 3
    run = SimpleNamespace(iter_s=t, it=it)
    f = iteration_floor(run, 0.02)
    # group {27, 20.7, 27}: weighted median 27 (weights 2/27 vs 1/20.7): only the 20.7 ms one errs
    assert f.tolist() == pytest.approx([0.0, 6.3 / 20.7, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="rel_bin"):
        shape_groups(it, 0.0)
    with pytest.raises(ValueError, match="lack"):
        shape_groups({k: v for k, v in it.items() if k != "graph"})


def test_decode_contexts_rebuilt_from_the_records():
    from hwmodels.validate.measured import decode_contexts

    for run in RUNS:
        ctx = decode_contexts(run)
        assert [len(c) for c in ctx] == run.it["decode_seqs"].tolist()
        assert [sum(c) for c in ctx] == run.it["decode_kv_tokens"].tolist()
        assert [max(c, default=0) for c in ctx] == run.it["longest_decode_context"].tolist()


def test_wave_model_cta_work_follows_the_grid():
    from hwmodels.validate.waves import cta_tokens, makespan

    # 16 padded sequences x 8 KV heads on 264 slots: 2 splits of 344 blocks (44032 tokens)
    w = cta_tokens([50000, 28000], 16, 8, 87843, 264)
    assert len(w) == 16 * 8 * 2
    assert w[:4].tolist() == [44032.0, 50000 - 44032.0, 44032.0, 50000 - 44032.0]  # seq 0, heads 0-1
    assert w[16:18].tolist() == [28000.0, 0.0] and w[32:34].tolist() == [1.0, 0.0]  # seq 1; padding
    assert makespan(w, 264, "wave") == makespan(w, 264, "list") == 44032.0  # one wave
    # 40 sequences (no split, 320 CTAs): two waves; list scheduling packs the second wave's CTAs
    w40 = cta_tokens([1000] * 33 + [9000] * 7, 40, 8, 87843, 264)
    assert makespan(w40, 264, "wave") == 1000 + 9000 and makespan(w40, 264, "list") == 9000 + 1000
    with pytest.raises(ValueError, match="mode"):
        makespan(w40, 264, "waves")
    with pytest.raises(ValueError, match="padded"):
        cta_tokens([1, 2, 3], 2, 8, 87843, 264)


@pytest.mark.slow
def test_wave_model_is_worse_than_the_committed_straggler():
    """issue 15's wave-quantization hypothesis, refitted on the capacity runs (measured: Mooncake load
    MAPE 11.7-18.2% against 4.4-6.6% with the committed profile), so the profile does not use it."""
    from hwmodels.validate.waves import evaluate

    for mode in ("wave", "list"):
        _, rows = evaluate(RUNS, mode)
        for row, run in zip(rows, RUNS):
            if run.window == "mooncake_conv":
                mine = float(np.mean(np.abs(iteration_errors(run, "reference"))) * 100)
                assert row["iteration_mape_pct"] > mine + 1.0, (mode, run.label)


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

    monkeypatch.setattr(R, "step_time_inline", measured)  # the iteration's step-time call (inlined when compiled)
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
    """The Mooncake window at load 0.6 replayed again at the same rate after a restart of the engine
    (data/h200_repeat): every measured TTFT / TPOT / E2E p50 and p90 within 1% of the original run
    (measured: at most 0.47% and 0.28%), far inside the model's worst errors (8.5% at p50, 10.7% at
    p90). The earlier sessions' repeats, in the scheduler's decode order, agree within 1.9% / 1.7%."""
    from hwmodels.validate.measured import REPEAT_DIR
    from hwmodels.validate.report import repeat_spread

    repeats = load_runs(REPEAT_DIR)
    s = repeat_spread(RUNS, repeats)
    assert len(s["engine_repeat_runs"]) == 1 and {round(r["load"], 2) for r in s["engine_repeat_runs"]} == {0.6}
    assert s["engine_repeat_p50_max_abs_diff_pct"] <= 1.0 and s["engine_repeat_p90_max_abs_diff_pct"] <= 1.0
    old = load_runs(SCHEDULER_ORDER_DIR)
    s_old = repeat_spread(old, load_runs(SCHEDULER_ORDER_DIR.parent / "h200_repeat"))
    assert len(s_old["engine_repeat_runs"]) == 4
    assert s_old["engine_repeat_p50_max_abs_diff_pct"] <= 2.0 and s_old["engine_repeat_p90_max_abs_diff_pct"] <= 2.0
    with pytest.raises(ValueError, match="no original run"):
        repeat_spread([r for r in RUNS if r.window != "mooncake_conv"], repeats)
