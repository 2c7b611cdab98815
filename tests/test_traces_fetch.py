"""traces.fetch: catalogue entries pinned by size and SHA-256; a wrong file is refused and leaves nothing."""

import hashlib
from pathlib import Path

import pytest

from traces import fetch as F
from traces.errors import TraceError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A catalogue of one small file, with its true size and hash."""
    body = b'{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [1]}\n'
    src = tmp_path / "src.jsonl"
    src.write_bytes(body)
    cat = tmp_path / "cat.toml"
    cat.write_text(f'["tiny.jsonl"]\nurl = "{src.as_uri()}"\nsha256 = "{hashlib.sha256(body).hexdigest()}"\n'
                   f'bytes = {len(body)}\nsource = "a test file"\nlicence = "none"\n')
    read = F.catalogue.__wrapped__  # uncached, so the real catalogue's cache is left alone
    monkeypatch.setattr(F, "catalogue", lambda path=cat: read(path))
    monkeypatch.setenv("SERVEGYM_TRACE_DIR", str(tmp_path / "cache"))
    return src, body


def test_fetch_downloads_checks_and_installs(tiny, tmp_path):
    src, body = tiny
    path = F.fetch("tiny.jsonl")  # from its file:// URL
    assert path == tmp_path / "cache" / "tiny.jsonl" and path.read_bytes() == body
    assert F.locate("tiny.jsonl", shared=tmp_path / "none") == path


def test_a_copy_that_differs_is_refused_and_leaves_nothing(tiny, tmp_path):
    src, body = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(body.replace(b"10", b"11"))  # same size, other bytes
    with pytest.raises(TraceError, match=r"bad.jsonl has SHA-256 [0-9a-f]{64}, the catalogue's tiny.jsonl has"):
        F.fetch("tiny.jsonl", source=bad)
    short = tmp_path / "short.jsonl"
    short.write_bytes(body[:-1])
    with pytest.raises(TraceError, match=f"short.jsonl has {len(body) - 1} bytes, the catalogue's tiny.jsonl has"):
        F.fetch("tiny.jsonl", source=short)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_a_refused_install_leaves_no_directory_it_made(tiny, tmp_path, capsys):
    """python -m traces.fetch NAME --from X --dir D, refused (a wrong or missing copy), left an empty D behind
    (and every missing parent of it); a directory that was there before is kept."""
    src, body = tiny
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(body[:-1])
    for copy in (bad, tmp_path / "missing.jsonl"):
        assert F.main(["tiny.jsonl", "--from", str(copy), "--dir", str(tmp_path / "d" / "e")]) == 2
        assert str(copy) in capsys.readouterr().err
        assert not (tmp_path / "d").exists()
    (tmp_path / "kept").mkdir()
    assert F.main(["tiny.jsonl", "--from", str(bad), "--dir", str(tmp_path / "kept")]) == 2
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []
    assert F.main(["tiny.jsonl", "--from", str(src), "--dir", str(tmp_path / "d" / "e")]) == 0
    assert (tmp_path / "d" / "e" / "tiny.jsonl").read_bytes() == body


def test_unknown_name_and_cli_errors(tiny, capsys):
    with pytest.raises(TraceError, match=r"no public trace 'nope.csv' \(have tiny.jsonl\)"):
        F.fetch("nope.csv")
    assert F.main(["nope.csv"]) == 2
    assert "no public trace 'nope.csv'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        F.main(["tiny.jsonl", "tiny.jsonl", "--from", "x"])
    assert F.main(["tiny.jsonl"]) == 0


def test_an_install_directory_that_cannot_be_made_is_a_one_line_error(tiny, tmp_path, capsys):
    src, body = tiny
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub"):  # a file where the directory should be, and one below it
        with pytest.raises(TraceError, match=f"cannot write tiny.jsonl into {bad} "):
            F.fetch("tiny.jsonl", dest=bad, source=src)
        assert F.main(["tiny.jsonl", "--from", str(src), "--dir", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and str(bad) in err


def test_locate_prefers_the_shared_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVEGYM_TRACE_DIR", str(tmp_path / "cache"))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "x.csv").write_text("a")
    assert F.locate("x.csv", shared=tmp_path / "shared") == tmp_path / "shared" / "x.csv"
    assert F.locate("y.csv", shared=tmp_path / "shared") == tmp_path / "cache" / "y.csv"


def test_the_real_catalogue_is_well_formed():
    cat = F.catalogue()
    assert {"azure_llm_2023_conv.csv", "azure_llm_2023_code.csv", "mooncake_conversation.jsonl",
            "mooncake_synthetic.jsonl"} <= set(cat)
    for e in cat.values():
        assert e.url.startswith("https://raw.githubusercontent.com/") and len(e.url.split("/")[5]) == 40  # a commit


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/traces absent (the shared production traces)")
@pytest.mark.parametrize("name", ["azure_llm_2023_conv.csv", "mooncake_conversation.jsonl"])
def test_the_shared_copies_are_the_catalogued_files(name, tmp_path):
    # the pinned hashes are the files every shared-trace test and leaderboard number was measured on
    assert F.fetch(name, tmp_path, source=SHARED / name).read_bytes() == (SHARED / name).read_bytes()


def test_an_installed_copy_that_differs_is_named_and_its_scenario_skipped(tiny, tmp_path, capsys):
    from dataclasses import replace

    from agents.scenarios import TRANSFER_SCENARIOS

    src, body = tiny
    good = F.fetch("tiny.jsonl", source=src)
    assert F.not_the_catalogued(good) is None
    assert F.not_the_catalogued(tmp_path / "other.jsonl") is None  # not catalogued: nothing to compare
    sc = replace(TRANSFER_SCENARIOS[0], trace=str(good))
    assert sc.trace_available() == (True, "")
    good.write_bytes(body[:-1])  # a truncated copy
    ok, why = sc.trace_available()
    assert not ok and why == (f"trace file {good} has {len(body) - 1} bytes, the catalogue's tiny.jsonl has "
                              f"{len(body)} (reinstall: `python -m traces.fetch tiny.jsonl`)")
    good.write_bytes(body.replace(b"10", b"11"))  # same size, other bytes
    assert F.not_the_catalogued(good).startswith(f"{good} has SHA-256 ")
    assert not sc.trace_available()[0]
    F.main(["--list"])  # the listing says so too
    assert f"NOT the catalogued file: {good} has SHA-256" in capsys.readouterr().out


def test_a_missing_copy_is_refused_even_when_the_file_is_installed(tiny, tmp_path, capsys):
    """--from a path that is not there was ignored without a word once the file was installed."""
    src, body = tiny
    F.fetch("tiny.jsonl", source=src)
    missing = tmp_path / "nonexistent.jsonl"
    with pytest.raises(TraceError, match=rf"^traces.fetch: cannot read {missing} \(no such file\)$"):
        F.fetch("tiny.jsonl", source=missing)
    assert F.main(["tiny.jsonl", "--from", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_list_looks_in_the_directory_given(tiny, tmp_path, capsys):
    """--list --dir D said where the default places hold each file, not D."""
    src, body = tiny
    F.main(["tiny.jsonl", "--from", str(src), "--dir", str(tmp_path / "d")])
    capsys.readouterr()
    assert F.main(["--list", "--dir", str(tmp_path / "d")]) == 0
    assert f"\t{tmp_path / 'd' / 'tiny.jsonl'}\n" in capsys.readouterr().out
    assert F.main(["--list", "--dir", str(tmp_path / "empty")]) == 0
    assert "\tnot installed\n" in capsys.readouterr().out
