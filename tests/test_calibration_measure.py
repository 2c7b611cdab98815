"""The measurement script on the CPU (--tiny): CSV schema, resumability, repeat tags, guards."""

import csv
import json

import numpy as np
import pytest
import torch

from hwmodels import calibrate_measure as cm

ARGS = ["--tiny", "--cpu", "--warm-s", "0", "--min-reps", "5"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    cm.main(["--out", str(out), *ARGS])
    return out


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_category_written_with_its_schema(tiny):
    for cat in cm.CATEGORIES:
        rows = _rows(tiny / f"{cat}.csv")
        assert rows and list(rows[0]) == cm.FIELDS[cat]
        assert len(rows) == sum(1 for _ in cm.GRIDS[cat](cm.TINY, True))
        for r in rows:
            assert float(r["median_s"]) > 0 and int(r["repeats"]) >= 5
    env = json.loads((tiny / "environment.json").read_text())
    assert env["runs"][0]["tiny"] is True and env["runs"][0]["torch"] == torch.__version__


def test_layer_rows_carry_full_shape(tiny):
    r = _rows(tiny / "layer.csv")[0]
    d = cm.TINY[r["model"]]
    assert (int(r["hidden"]), int(r["heads"]), int(r["kv_heads"]), int(r["ffn"])) == (d.hidden, d.heads, d.kv_heads, d.ffn)
    c, p = int(r["chunk"]), int(r["prior"])
    assert int(r["prefill_attn_pairs"]) == c * p + c * (c + 1) // 2


def test_resume_skips_measured_points_and_repeat_tag_adds(tiny):
    before = {c: len(_rows(tiny / f"{c}.csv")) for c in cm.CATEGORIES}
    cm.main(["--out", str(tiny), *ARGS, "--only", "gemm", "copy"])
    assert {c: len(_rows(tiny / f"{c}.csv")) for c in cm.CATEGORIES} == before
    cm.main(["--out", str(tiny), *ARGS, "--only", "gemm", "--repeat-tag", "r2"])
    rows = _rows(tiny / "gemm.csv")
    assert len(rows) == 2 * before["gemm"]
    assert sum(r["key"].endswith("|rep=r2") for r in rows) == before["gemm"]


def test_toy_and_real_data_never_mix(tmp_path):
    (tmp_path / "environment.json").write_text(json.dumps({"runs": [{"run_id": "x", "tiny": False}]}))
    with pytest.raises(SystemExit, match="never mix"):
        cm.main(["--out", str(tmp_path), *ARGS])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_full_grid_needs_a_gpu(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        cm.main(["--out", str(tmp_path)])


def test_route_counts_deterministic_and_conserving():
    a = cm.route_counts(128, 8, 1000, 1.0, seed=7)
    assert np.array_equal(a, cm.route_counts(128, 8, 1000, 1.0, seed=7))
    assert a.sum() == 8000 and a.max() <= 1000
    flat, skewed = cm.route_counts(64, 2, 4096, 0.0, 1), cm.route_counts(64, 2, 4096, 2.0, 1)
    assert skewed.max() > 2 * flat.max()


def test_grid_keys_unique_and_models_match_catalogue():
    from hwmodels import get_model

    for cat, grid in cm.GRIDS.items():
        keys = [k for k, _ in grid(cm.MODELS, False)]
        assert len(keys) == len(set(keys)), cat
    for name, d in cm.MODELS.items():
        base, _, tp = name.partition("@tp")
        m, tp = get_model(base), int(tp or 1)
        ffn = m.moe_intermediate if m.is_moe else m.intermediate
        assert (d.hidden, d.heads, d.kv_heads, d.head_dim, d.ffn) == (
            m.hidden, m.heads // tp, max(m.kv_heads // tp, 1), m.head_dim, ffn // tp), name
