"""H200 calibration: the current step-time model against the committed measurements.

Recomputes the held-out error from hwmodels/calibration/*.csv and the default calibration on
every run, so that neither the model code nor data/calibration_h200.toml can drift away from the
measurements unnoticed.
"""

import csv
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from hwmodels import calibrate_fit as cf
from hwmodels import calibration as calmod
from hwmodels.errors import HwModelError

ROOT = Path(__file__).resolve().parents[1]
MIN_HELD = {"gemm": 100, "prefill_layer": 20, "decode_layer": 25, "expert_ffn": 20, "copy": 8}


@pytest.fixture(scope="module")
def rep():
    return cf.report()


def test_default_calibration_is_the_fitted_h200_file():
    assert calmod.FITTED_FILE.exists()
    cal = calmod.default_calibration()
    assert cal.source.startswith("calibration_h200.toml: fitted on H200 measurements")
    assert cal != calmod.Calibration.priors()


@pytest.mark.parametrize("cat", cf.CATEGORIES)
def test_heldout_error_meets_target(rep, cat):
    r = rep[cat]
    assert r["points"] >= MIN_HELD[cat]
    assert r["mape"] <= cf.TARGET_PCT[cat], f"{cat}: held-out MAPE {r['mape']}% > target {cf.TARGET_PCT[cat]}%"
    assert r["max_abs_pct_error"] < 40.0


def test_offgrid_validation_points_are_scored(rep):
    off = rep["extra"]["offgrid"]
    for cat in cf.CATEGORIES:
        assert off[cat]["points"] >= 8
        assert off[cat]["mape"] <= cf.TARGET_PCT[cat] + 1.0  # never fitted: sizes, TP degree, EP not in the grid


def test_toml_meta_matches_recomputed_error(rep):
    meta = tomllib.loads(calmod.FITTED_FILE.read_text())["meta"]
    for cat in cf.CATEGORIES:
        assert meta[f"heldout_mape_pct_{cat}"] == pytest.approx(rep[cat]["mape"], abs=2e-3)


def _fitted_params():
    cal = calmod.load_calibration(calmod.FITTED_FILE)
    return np.array([getattr(cal, n) for n in cf.FITTED])


def test_fit_reproduces_committed_calibration():
    cal = cf.fit(cf.load(), log=None)
    np.testing.assert_allclose([getattr(cal, n) for n in cf.FITTED], _fitted_params(), rtol=2e-3)


def test_fit_never_sees_heldout_or_validation_rows(tmp_path):
    # doubling every held-out, off-grid and repeat measurement must not move the fitted parameters
    for f in cf.CAL_DIR.iterdir():
        if f.suffix in (".csv", ".json"):
            shutil.copy(f, tmp_path / f.name)
    for name in ("gemm", "layer", "expert_ffn", "copy"):
        p = tmp_path / f"{name}.csv"
        with open(p, newline="") as fh:
            r = csv.DictReader(fh)
            fields, rows = r.fieldnames, list(r)
        for row in rows:
            k = row["key"]
            if "|rep=" in k or k.endswith("|val") or cf.held_out(k):
                row["median_s"] = repr(2.0 * float(row["median_s"]))
        with open(p, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    cal = cf.fit(cf.load(tmp_path), log=None)
    np.testing.assert_allclose([getattr(cal, n) for n in cf.FITTED], _fitted_params(), rtol=2e-3)


def test_split_is_fixed():
    keys = [f"gemm|m={i}" for i in range(3000)]
    held = [cf.held_out(k) for k in keys]
    assert held == [cf.held_out(k) for k in keys]
    assert 0.3 < np.mean(held) < 0.37
    assert cf.held_out("layer|decode|llama-3.1-8b|b=1|ctx=128") is False


def test_raw_data_and_environment_are_recorded():
    env = json.loads((cf.CAL_DIR / "environment.json").read_text())
    runs = {r["run_id"]: r for r in env["runs"]}
    assert runs and not any(r["tiny"] for r in runs.values())
    for r in runs.values():
        assert r["gpu"]["name"] == "NVIDIA H200" and r["torch"].startswith("2.") and r["torch_cuda"]
        assert "Driver Version" in r["nvidia_smi"]
        assert r["snapshots"] and "MHz" in r["snapshots"][0]["query"]
    counts = {}
    for name in ("gemm", "attention", "layer", "expert_ffn", "copy"):
        with open(cf.CAL_DIR / f"{name}.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        keys = [row["key"] for row in rows]
        assert len(keys) == len(set(keys)), f"{name}.csv: duplicate keys"
        for row in rows:
            assert row["run_id"] in runs
            assert int(row["repeats"]) >= 5 and row["timer"] == "cuda_event"
            assert 0 < float(row["min_s"]) <= float(row["median_s"]) <= float(row["max_s"])
        counts[name] = sum("|rep=" not in k for k in keys)
    assert counts["gemm"] >= 400 and counts["layer"] >= 300 and counts["expert_ffn"] >= 130
    assert counts["attention"] >= 100 and counts["copy"] >= 60
    with open(cf.CAL_DIR / "layer.csv", newline="") as fh:
        assert all(r["mode"] == "graph" for r in csv.DictReader(fh))


def test_report_cli_writes_json(tmp_path):
    out = tmp_path / "rep.json"
    r = subprocess.run([sys.executable, "-m", "hwmodels.calibrate", "report", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "held-out MAPE" in r.stdout
    data = json.loads(out.read_text())
    for cat in cf.CATEGORIES:
        assert set(data[cat]) == {"mape", "max_abs_pct_error", "points"}
        assert data[cat]["points"] > 0


def test_bad_data_gives_named_errors(tmp_path):
    with pytest.raises(HwModelError, match=r"gemm.csv: calibration data missing"):
        cf.load(tmp_path)
    for f in cf.CAL_DIR.glob("*.csv"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "copy.csv").read_text().splitlines()
    head = text[0].split(",")
    row = text[1].split(",")
    row[head.index("median_s")] = "fast"
    (tmp_path / "copy.csv").write_text("\n".join([text[0], ",".join(row)] + text[2:]) + "\n")
    with pytest.raises(HwModelError, match=r"copy.csv line 2: median_s 'fast' is not a number"):
        cf.load(tmp_path)
    r = subprocess.run([sys.executable, "-m", "hwmodels.calibrate", "report", "--data", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "median_s 'fast'" in r.stderr
