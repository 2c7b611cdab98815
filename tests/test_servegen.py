"""traces.servegen: ServeGen's per-client rate records replayed as arrivals (ServeGen's construction,
thinned), on a small folder written here, and on the pinned m-large records when installed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import traces
from traces.errors import TraceError
from traces.fetch import SHARED_TRACES, locate, missing_hint
from traces.servegen import RECORDS, WINDOW_S, read_records, servegen_trace

ROWS = {  # client -> rows (start, rate, cv, law, shape, scale): two days of 10-minute windows
    0: [(0, 0.5, 1.0, "Gamma", 0.9, 0.1), (600, 0, 0, "", 0, 0), (86400, 0.25, 2.0, "Weibull", 0.4, 0.2)],
    3: [(0, 0.1, 1.0, "Weibull", 0.5, 0.3), (1200, 0.05, 1.0, "Gamma", 2.0, 0.5), (172200, 0.2, 1.0, "Gamma", 1.0, 1.0)],
}


def write_folder(root: Path, rows=ROWS) -> Path:
    d = root / "m-test"
    d.mkdir()
    for client, rs in rows.items():
        text = "\n".join(",".join("" if v == "" else str(v) for v in r) if r[3] else f"{r[0]},0,0,,0,0" for r in rs)
        (d / f"chunk-{client}-trace.csv").write_text(text + "\n")
    return d


def records_mean(rows=ROWS, days=2) -> float:
    """Arrivals per second the records give before thinning (ceil(rate x 600) - 1 per window)."""
    return sum(max(math.ceil(r[1] * WINDOW_S) - 1, 0) for rs in rows.values() for r in rs
               if r[0] < days * 86400) / (days * 86400)


def test_unthinned_arrivals_are_servegens_construction(tmp_path):
    d = write_folder(tmp_path)
    tr = servegen_trace(d, seed=1, rate_rps=records_mean(), check=False)
    assert tr.duration_s <= 2 * 86400
    # keep probability 1: every (client, window) gives ceil(rate x 600) - 1 arrivals inside its window
    # (the last running sum is the window's end, which ServeGen's construct.py filters out)
    want = {}
    for rs in ROWS.values():
        for t0, rate, *_ in rs:
            want[t0] = want.get(t0, 0) + max(math.ceil(rate * WINDOW_S) - 1, 0)
    got = np.bincount((tr.arrival_s // WINDOW_S).astype(int), minlength=288)
    for t0, n in want.items():
        assert got[int(t0 // WINDOW_S)] == n, t0
    assert got.sum() == sum(want.values()) and np.all(np.diff(tr.arrival_s) >= 0)
    assert tr.prompt_tokens.min() >= 1 and tr.output_tokens.min() >= 1


def test_thinning_keeps_the_mean_rate_and_the_seed_decides(tmp_path):
    d = write_folder(tmp_path)
    full = records_mean()
    counts = [len(servegen_trace(d, seed=s, rate_rps=full / 4, check=False)) for s in range(20)]
    n = sum(max(math.ceil(r[1] * WINDOW_S) - 1, 0) for rs in ROWS.values() for r in rs)
    assert abs(np.mean(counts) - n / 4) < 4 * math.sqrt(n * 0.25 * 0.75 / 20)  # binomial mean, 4 sigma
    a = servegen_trace(d, seed=3, rate_rps=full / 4, check=False)
    b = servegen_trace(d, seed=3, rate_rps=full / 4, check=False)
    c = servegen_trace(d, seed=4, rate_rps=full / 4, check=False)
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.output_tokens, b.output_tokens)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    one = servegen_trace(d, seed=3, rate_rps=records_mean(days=1) / 2, days=1, check=False)
    assert one.duration_s < 86400 and one.arrival_s.max() < 86400


def test_load_trace_reads_a_servegen_folder(tmp_path):
    d = write_folder(tmp_path)
    tr = traces.load_trace(d, seed=2, rate_rps=0.002, check=False)
    assert tr.meta.name == "servegen_m-test" and "thinned to 0.002 req/s" in tr.meta.source
    with pytest.raises(TraceError, match="accepted parameters: seed, rate_rps, days, check"):
        traces.load_trace(d, rate=1.0)
    with pytest.raises(TraceError, match=r"chunk-0-trace.csv: one client's ServeGen rate records.*pass its model folder"):
        traces.load_trace(d / "chunk-0-trace.csv")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TraceError, match="is a directory, expected a trace file"):
        traces.load_trace(empty)


@pytest.mark.parametrize("row,match", [
    ("0,0.5,1.0,Gamma,0.9", "chunk-0-trace.csv:1: expected 6 fields"),
    ("0,0.5,1.0,Poisson,1,1", "chunk-0-trace.csv:1: law must be one of"),
    ("0,-1,1.0,Gamma,1,1", "chunk-0-trace.csv:1: start and rate must be finite and >= 0"),
    ("0,0.5,1.0,,0,0", "chunk-0-trace.csv:1: rate 0.5 req/s with no fitted law"),
    ("0,0.5,1.0,Gamma,0,1", "chunk-0-trace.csv:1: shape and scale must be finite and > 0"),
    ("zero,0.5,1.0,Gamma,1,1", "chunk-0-trace.csv:1: start and rate must be numbers"),
])
def test_bad_records_name_file_and_line(tmp_path, row, match):
    d = tmp_path / "m-bad"
    d.mkdir()
    (d / "chunk-0-trace.csv").write_text(row + "\n")
    with pytest.raises(TraceError, match=match):
        read_records(d, check=False)


def test_non_utf8_record_names_file_and_line(tmp_path):
    d = tmp_path / "m-bad"
    d.mkdir()
    (d / "chunk-0-trace.csv").write_bytes(b"0,0,0,,0,0\n\xff\xfe,1,2,Gamma,1,1\n")
    with pytest.raises(TraceError, match=r"chunk-0-trace.csv:2: not UTF-8 text \(byte 0xff at offset 11\)"):
        read_records(d, check=False)


def test_bad_arguments_and_unpinned_records_are_refused(tmp_path):
    d = write_folder(tmp_path)
    with pytest.raises(TraceError, match="not the pinned ServeGen records of 'm-test'"):
        servegen_trace(d)
    with pytest.raises(TraceError, match=r"rate_rps must be in \(0, "):
        servegen_trace(d, rate_rps=records_mean() * 1.01, check=False)
    with pytest.raises(TraceError, match="check must be True or False"):
        servegen_trace(d, check="no")
    with pytest.raises(TraceError, match=r"days must be an integer in \[1, 2\]"):
        servegen_trace(d, days=3, check=False)
    with pytest.raises(TraceError, match="no ServeGen chunk"):
        read_records(tmp_path / "nowhere")
    hint = missing_hint(tmp_path / "ServeGen" / "data" / "language" / "m-large")
    assert "clone https://github.com/alibaba/ServeGen" in hint and "f891d1189eb32b3868dfc443800c4150548c282a" in hint


M_LARGE = locate("ServeGen/data/language/m-large", SHARED_TRACES)


@pytest.mark.skipif(not M_LARGE.is_dir(), reason=f"ServeGen records not installed ({missing_hint(M_LARGE)})")
def test_pinned_m_large_records():
    rec = read_records(M_LARGE)
    assert rec.sha256 == RECORDS["m-large"] and rec.clients == 162 and rec.duration_s == 14 * 86400
    mean = float(rec.rate.sum() * WINDOW_S / rec.duration_s)
    assert mean == pytest.approx(195.8, abs=0.1)  # the records' requests/s over the 14 days
    tr = servegen_trace(M_LARGE, rate_rps=2.0, days=1)
    assert len(tr) == pytest.approx(2.0 * 86400, rel=0.05)


def test_leaderboard_skips_a_servegen_folder_that_is_empty_or_another_checkout(tmp_path):
    """Before: trace_available checked only that the folder existed, and the leaderboard then died
    in load_trace with a traceback; now the scenario is skipped with the reason."""
    import dataclasses

    from agents.scenarios import SCENARIOS

    sc = next(s for s in SCENARIOS if "servegen_m_large" in s.id)
    folder = tmp_path / "m-large"
    folder.mkdir()
    ok, why = dataclasses.replace(sc, trace=str(folder)).trace_available()
    assert not ok and why.startswith(f"ServeGen records {folder}: no ServeGen chunk-<client>-trace.csv files")
    (folder / "chunk-0-trace.csv").write_text("0,0,0,,0,0\n")
    ok, why = dataclasses.replace(sc, trace=str(folder)).trace_available()
    assert not ok and "not the pinned ServeGen records of 'm-large'" in why
    d = write_folder(tmp_path)  # a model RECORDS does not pin: nothing to check against
    assert dataclasses.replace(sc, trace=str(d)).trace_available() == (True, "")


def test_autoscale_rate_rps_on_servegen_records_says_trace_params(tmp_path):
    from envs.autoscale import env as asc

    d = write_folder(tmp_path)
    with pytest.raises(ValueError, match=r"ServeGen records .*m-test take their mean rate as trace_params=\{'rate_rps': 3\}"):
        asc.AutoscaleVecEnv(1, trace=str(d), rate_rps=3.0)
