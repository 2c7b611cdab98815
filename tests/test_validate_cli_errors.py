"""``python -m hwmodels.validate`` analysis commands: bad --data, a truncated or malformed run file and
an unwritable --json end in one line naming what and where, exit 2 (no traceback, no minutes lost)."""

from __future__ import annotations

import gzip
import json

import pytest

from hwmodels.validate.__main__ import main
from hwmodels.validate.measured import load_runs
from hwmodels.validate.outpath import check_writable


def test_missing_data_folder(capsys, tmp_path):
    assert main(["report", "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m hwmodels.validate report: error: no *.json.gz measurement files in {tmp_path / 'none'}"]


def test_truncated_run_file_names_the_file(capsys, tmp_path):
    blob = gzip.compress(json.dumps({"window": {"name": "w"}, "runs": [], "settings": {}}).encode())
    (tmp_path / "cut.json.gz").write_bytes(blob[: len(blob) // 2])
    assert main(["waves", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "waves: error:" in err and f"{tmp_path / 'cut.json.gz'}: not a readable run file" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("doc,match", [
    ({"runs": []}, r"no field\(s\) \['window', 'settings'\]"),
    ({"window": {"name": "w"}, "settings": {}, "runs": [{"kind": "load"}]}, r"malformed run record \(KeyError"),
])
def test_malformed_run_file_names_the_file(tmp_path, doc, match):
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(ValueError, match=r"bad\.json\.gz: .*" + match):
        load_runs(tmp_path)


def test_unwritable_json_is_refused_before_the_work(capsys, tmp_path):
    assert main(["compare", str(tmp_path / "no_runs_here"), "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path}: is a folder" in capsys.readouterr().err  # refused before reading --data
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="--json .*file/out.json: cannot write here"):
        check_writable(blocker / "out.json", "--json")
    ok = tmp_path / "new" / "out.json"
    check_writable(ok, "--json")
    assert not ok.exists() and ok.parent.is_dir()
