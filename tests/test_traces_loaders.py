"""File loaders: every format, chosen by content; caching; every bad-input error names row and field."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from traces import TraceError, load_trace, trace_stats
from traces.readers import azure as azure_reader

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
AZURE = "azure_llm_2023_conv.csv"
MOONCAKE = "mooncake_conversation.jsonl"


@pytest.fixture
def shared() -> Path:
    if not (SHARED / AZURE).is_file() or not (SHARED / MOONCAKE).is_file():
        pytest.skip(f"real traces not found at {SHARED} (they live beside the project, not in it)")
    return SHARED


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SERVEGYM_CACHE", str(d))
    return d


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def raises(path: Path, *needles: str, **params: object) -> str:
    with pytest.raises(TraceError) as e:
        load_trace(path, **params)
    msg = str(e.value)
    assert str(path) in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZ_ROWS = [
    "2023-11-16 18:15:46.6805900,374,44",
    "2023-11-16 18:15:50.9951690,396,109",
    "2023-11-16 18:15:51.2224670,879,55",
]
BG_HEAD = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
BG_ROWS = [
    "5,ChatGPT,472,18,490,Conversation log",
    "45,ChatGPT,1087,0,1087,Conversation log",
    "118,GPT-4,417,276,693,Conversation log",
    "131,ChatGPT,1360,218,1578,API log",
    "174,GPT-4,2062,0,2062,API log",
    "175,ChatGPT,250,39,289,API log",
    "212,ChatGPT,1138,171,1309,API log",
    "262,GPT-4,93,331,424,Conversation log",
]
MC_ROWS = [
    '{"timestamp": 0, "input_length": 600, "output_length": 50, "hash_ids": [0, 1]}',
    '{"timestamp": 0, "input_length": 1100, "output_length": 3, "hash_ids": [0, 2, 3]}',
    '{"timestamp": 3000, "input_length": 1200, "output_length": 80, "hash_ids": [0, 2, 4]}',
]


# ---------------------------------------------------------------- real files and content sniffing

def test_real_files_load(shared: Path) -> None:
    az = load_trace(shared / AZURE)
    assert len(az) == 19366 and az.arrival_s[0] == 0.0
    assert (az.prompt_tokens[0], az.output_tokens[0]) == (374, 44)
    assert az.failed is None  # the released conversation file has no zero GeneratedTokens (minimum 7)
    assert az.output_tokens.min() == 7
    assert abs(az.arrival_s[1] - 4.314579) < 1e-9  # 18:15:50.9951690 - 18:15:46.6805900
    mc = load_trace(shared / MOONCAKE)
    s = trace_stats(mc)
    assert (len(mc), s["block_refs"], s["distinct_blocks"]) == (12031, 288500, 182790)
    assert mc.block_size == 512
    assert round(s["infinite_cache_block_hit_ratio"], 3) == 0.366
    assert round(s["prompt_mean"]) == 12035 and round(s["output_mean"]) == 343
    assert mc.chain(0).tolist() == list(range(14))


def test_format_chosen_by_content_not_name(shared: Path, tmp_path: Path) -> None:
    a = shutil.copy(shared / AZURE, tmp_path / "looks_like.jsonl")
    m = shutil.copy(shared / MOONCAKE, tmp_path / "looks_like.csv")
    ra, rm = load_trace(a), load_trace(m)
    oa, om = load_trace(shared / AZURE), load_trace(shared / MOONCAKE)
    assert np.array_equal(ra.arrival_s, oa.arrival_s) and np.array_equal(ra.prompt_tokens, oa.prompt_tokens)
    assert np.array_equal(rm.block_ids, om.block_ids) and np.array_equal(rm.block_offsets, om.block_offsets)
    assert ra.meta.name == "looks_like.jsonl" and "Azure" in ra.meta.source


def test_gzip_by_content(tmp_path: Path) -> None:
    p = tmp_path / "trace.txt"
    with gzip.open(p, "wt") as f:
        f.write(AZ_HEAD + "\n".join(AZ_ROWS) + "\n")
    tr = load_trace(p)
    assert tr.prompt_tokens.tolist() == [374, 396, 879]


@pytest.mark.parametrize("damage", ["truncated", "crc", "length"])
def test_corrupt_gzip_is_a_trace_error(tmp_path: Path, damage: str) -> None:
    """A truncated gzip, a bad CRC and a bad length trailer were EOFError / BadGzipFile from deep in
    a reader; each is one TraceError naming the file."""
    rows = "\n".join(f"{r}" for r in AZ_ROWS * 200)
    data = gzip.compress((AZ_HEAD + rows + "\n").encode())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "crc":
        data = data[:-8] + bytes(4) + data[-4:]
    else:
        data = data[:-4] + bytes(4)
    p = tmp_path / "trace.csv.gz"
    p.write_bytes(data)
    with pytest.raises(TraceError, match=r"trace\.csv\.gz: not a valid gzip file") as err:
        load_trace(p)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- Azure

def test_azure_timezones_and_mixed_precision(tmp_path: Path) -> None:
    p = write(tmp_path, "az2024.csv", AZ_HEAD + "2024-05-10 00:00:00.009930+00:00,2162,5\n"
              "2024-05-10 00:00:01+00:00,2399,6\n2024-05-10 02:00:02.5+02:00,76,15\n")
    tr = load_trace(p)
    assert np.allclose(tr.arrival_s, [0.0, 0.99007, 2.49007])
    assert any("TIMESTAMP" in t for t in tr.meta.transforms)


def test_azure_zero_output_flagged_not_dropped(tmp_path: Path) -> None:
    p = write(tmp_path, "a.csv", AZ_HEAD + "2023-11-16 18:15:46.68,374,0\n2023-11-16 18:15:47.00,10,3\n")
    tr = load_trace(p)
    assert len(tr) == 2 and tr.failed.tolist() == [True, False] and tr.output_tokens.tolist() == [0, 3]
    assert any("failed" in t for t in tr.meta.transforms)


@pytest.mark.parametrize("rows, line, field, what", [
    (["2023-11-16 18:15:50,1,1", "2023-11-16 18:15:49,1,1"], 3, "TIMESTAMP", "sorted"),
    (["2023-11-16 18:15:50,-3,1"], 2, "ContextTokens", ">= 1"),
    (["2023-11-16 18:15:50,0,1"], 2, "ContextTokens", ">= 1"),
    (["2023-11-16 18:15:50,5,1", "2023-11-16 18:15:51,5,nan"], 3, "GeneratedTokens", "integer"),
    (["2023-11-16 18:15:50,12.5,1"], 2, "ContextTokens", "integer"),
    (["2023-11-16 18:15:50,5,-1"], 2, "GeneratedTokens", ">= 0"),
    (["2023-11-16 25:99:00,5,1"], 2, "TIMESTAMP", "cannot parse"),
    (["NaT,5,1"], 2, "TIMESTAMP", "not a time"),
])
def test_azure_bad_rows(tmp_path: Path, rows: list[str], line: int, field: str, what: str) -> None:
    p = write(tmp_path, "bad.csv", AZ_HEAD + "\n".join(rows) + "\n")
    raises(p, f"line {line}", f"field {field!r}", what)


@pytest.mark.parametrize("rows, line, what", [
    # bare numbers: numpy reads "12345" as the year 12345 and epoch seconds as a year too, so two rows one second
    # apart loaded one year apart (31,536,000 s / 31,622,400 s)
    (["12345,5,1", "12346,5,1"], 2, "does not begin with a date YYYY-MM-DD"),
    (["2023-11-16 18:15:46,5,1", "1700000001,5,1"], 3, "does not begin with a date YYYY-MM-DD"),
    (["2023,5,1"], 2, "does not begin with a date YYYY-MM-DD"),
    # a row without a UTC offset among rows with one was read as UTC: 18:15:47 came 18,001 s after 18:15:46+05:00
    (["2023-11-16 18:15:46+05:00,5,1", "2023-11-16 18:15:47,5,1"], 3, "has no UTC offset, but line 2's"),
    (["2023-11-16 18:15:46,5,1", "2023-11-16 18:15:47Z,5,1"], 3, "gives a UTC offset, but line 2's"),
])
def test_azure_timestamps_without_a_date_or_mixing_offsets(tmp_path: Path, rows: list[str], line: int,
                                                           what: str) -> None:
    p = write(tmp_path, "bad.csv", AZ_HEAD + "\n".join(rows) + "\n")
    raises(p, f"line {line}", "field 'TIMESTAMP'", what)


def test_azure_mixed_offsets_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from traces.readers import _common

    monkeypatch.setattr(_common, "CHUNK_ROWS", 2)
    rows = ["2023-11-16 18:15:46+00:00,5,1", "2023-11-16 18:15:47+00:00,5,1", "2023-11-16 18:15:48,5,1"]
    raises(write(tmp_path, "mix.csv", AZ_HEAD + "\n".join(rows) + "\n"), "line 4", "has no UTC offset")
    p = write(tmp_path, "ok.csv", AZ_HEAD + "2023-11-16 18:15:46,5,1\n2023-11-16T18:15:47.5,5,1\n2023-11-17,5,1\n")
    assert load_trace(p).arrival_s.tolist() == [0.0, 1.5, 20654.0]


def test_azure_timestamps_are_read_to_the_nanosecond_and_no_digit_is_dropped(tmp_path: Path) -> None:
    # nine fractional digits (nanoseconds) are read exactly, as before; zeros past the ninth are exact too
    times = ("2023-11-16 18:15:46.000000000", "2023-11-16 18:15:46.680590012", "2023-11-16 18:15:47.1234567890000")
    for zone in ("", "+00:00", "Z"):
        body = "".join(f"{t}{zone},5,1\n" for t in times)
        tr = load_trace(write(tmp_path, f"ns{len(zone)}.csv", AZ_HEAD + body))
        assert tr.arrival_s.tolist() == [0.0, 0.680590012, 1.123456789]
    # a tenth digit that is not 0 was dropped: '.6805900123' read as '.680590012'
    for row, n in (("2023-11-16 18:15:46.6805900123,5,1", 10), ("2023-11-16 18:15:46.68059001200001Z,5,1", 14),
                   ("2023-11-16 18:15:46.6805900120000009-05:00,5,1", 16)):
        p = write(tmp_path, "long.csv", AZ_HEAD + "2023-11-16 18:15:45,5,1\n" + row + "\n")
        raises(p, "line 3", "field 'TIMESTAMP'", f"has {n} fractional-second digits; nanoseconds (9) are the finest")


def test_azure_error_line_counts_blank_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "bad.csv", AZ_HEAD + AZ_ROWS[0] + "\n\n" + "2023-11-16 18:15:50,x,1\n")
    raises(p, "line 4", "'ContextTokens'")


def test_azure_wrong_field_count(tmp_path: Path) -> None:
    p = write(tmp_path, "bad.csv", AZ_HEAD + AZ_ROWS[0] + "\n2023-11-16 18:15:50,5\n")
    raises(p, "line 3", "expected 3 fields")


def test_azure_large_file_uses_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from traces.readers import _common

    monkeypatch.setattr(_common, "CHUNK_ROWS", 2)
    rows = AZ_ROWS + ["2023-11-16 18:15:51.5,5,5", "2023-11-16 18:15:51.4,5,5"]
    p = write(tmp_path, "chunks.csv", AZ_HEAD + "\n".join(rows) + "\n")
    raises(p, "line 6", "'TIMESTAMP'", "earlier than the previous row")  # across a chunk boundary
    p2 = write(tmp_path, "ok.csv", AZ_HEAD + "\n".join(rows[:4]) + "\n")
    assert load_trace(p2).prompt_tokens.tolist() == [374, 396, 879, 5]


# ---------------------------------------------------------------- structure errors

def test_missing_columns(tmp_path: Path) -> None:
    raises(write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:50,5\n"),
           "missing column", "GeneratedTokens")
    raises(write(tmp_path, "b.csv", "Timestamp,Model,Request tokens,Response tokens,Log Type\n1,GPT-4,1,1,API log\n"),
           "missing column", "Total tokens")
    raises(write(tmp_path, "c.jsonl", '{"timestamp": 0, "input_length": 5}\n'), "missing field", "output_length")
    raises(write(tmp_path, "d.jsonl", MC_ROWS[0] + '\n{"timestamp": 5, "output_length": 5, "hash_ids": []}\n'),
           "line 2", "'input_length'", "missing")


def test_empty_and_unknown(tmp_path: Path) -> None:
    raises(write(tmp_path, "empty.csv", ""), "empty file")
    raises(write(tmp_path, "blank.csv", "\n \n"), "empty file")
    raises(write(tmp_path, "header_only.csv", AZ_HEAD), "no data rows")
    raises(write(tmp_path, "x.csv", "a,b,c\n1,2,3\n"), "unknown trace format", "supported")
    raises(write(tmp_path, "x.jsonl", '{"foo": 1}\n'), "not a supported format")
    p = tmp_path / "bin.dat"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    raises(p, "UTF-8")


@pytest.mark.parametrize("value", [None, 5, 1.5, b"default"])
def test_a_trace_that_is_neither_a_name_nor_a_path_is_a_trace_error(value: object) -> None:
    """Was pathlib's TypeError 'expected str, bytes or os.PathLike object, not NoneType'."""
    with pytest.raises(TraceError, match=rf"^trace must be a built-in name or a file path, got {re.escape(repr(value))} "
                                         rf"\({type(value).__name__}\)$"):
        load_trace(value)  # type: ignore[arg-type]


def test_unknown_name_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="not a built-in name.*azure_conv.*mooncake_conv"):
        load_trace("no_such_trace")
    with pytest.raises(TraceError, match="directory"):
        load_trace(tmp_path)


def test_file_params_rejected(tmp_path: Path) -> None:
    raises(write(tmp_path, "a.csv", AZ_HEAD + AZ_ROWS[0] + "\n"), "takes no parameters", model="GPT-4")


# ---------------------------------------------------------------- BurstGPT

def burst(tmp_path: Path, rows: list[str] = BG_ROWS, name: str = "burstgpt_sample.csv") -> Path:
    return write(tmp_path, name, BG_HEAD + "\n".join(rows) + "\n")


def test_burstgpt_sample(tmp_path: Path) -> None:
    tr = load_trace(burst(tmp_path))
    assert len(tr) == 8 and tr.arrival_s[0] == 0.0  # measured from the first arrival (file time 5 s)
    assert any("file time 5 s = 0 s" in t for t in tr.meta.transforms)
    assert tr.failed.tolist() == [False, True, False, False, True, False, False, False]
    assert tr.output_tokens[1] == 0 and tr.prompt_tokens[1] == 1087
    assert tr.tenant.dtype == np.int32 and len(set(tr.tenant.tolist())) == 4
    assert any("tenant" in t and "GPT-4/API log" in t for t in tr.meta.transforms)
    assert trace_stats(tr)["failed"] == 2


def test_burstgpt_filters_are_explicit(tmp_path: Path) -> None:
    p = burst(tmp_path)
    gpt4 = load_trace(p, model="GPT-4")
    assert gpt4.prompt_tokens.tolist() == [417, 2062, 93]
    assert any("filter model in ['GPT-4']: kept 3 of 8" in t for t in gpt4.meta.transforms)
    conv = load_trace(p, model=["GPT-4", "ChatGPT"], log_type="Conversation log")
    assert conv.prompt_tokens.tolist() == [472, 1087, 417, 93]
    raises(p, "model=['Claude']", "values present", model="Claude")
    raises(p, "only model= and log_type=", tenant=1)


def test_burstgpt_extra_columns(tmp_path: Path) -> None:
    head = "Timestamp,Session ID,Model,Request tokens,Response tokens,Total tokens,Log Type,Elapsed time\n"
    p = write(tmp_path, "b3.csv", head + "1.5,77,ChatGPT,10,5,15,Conversation log,0.8\n")
    assert load_trace(p).output_tokens.tolist() == [5]


@pytest.mark.parametrize("row, field, what", [
    ("300,ChatGPT,10,5,16,API log", "Total tokens", "!= Request tokens"),
    ("300,ChatGPT,10,-5,5,API log", "Response tokens", ">= 0"),
    ("300,ChatGPT,0,5,5,API log", "Request tokens", "a request with a response has a prompt"),
    ("3,ChatGPT,10,5,15,API log", "Timestamp", "sorted"),
    ("nan,ChatGPT,10,5,15,API log", "Timestamp", "finite"),
    ("300,,10,5,15,API log", "Model", "empty"),
    # Python's int() / float() behind numpy's conversion read '1_0' as 10: a source-code digit separator
    ("300,ChatGPT,1_0,5,15,API log", "Request tokens", "expected an integer, got '1_0'"),
    ("3_00,ChatGPT,10,5,15,API log", "Timestamp", "expected a number, got '3_00'"),
])
def test_burstgpt_bad_rows(tmp_path: Path, row: str, field: str, what: str) -> None:
    p = burst(tmp_path, BG_ROWS + [row])
    raises(p, f"line {len(BG_ROWS) + 2}", f"field {field!r}", what)


# ---------------------------------------------------------------- Mooncake

def test_mooncake_small(tmp_path: Path) -> None:
    tr = load_trace(write(tmp_path, "m.jsonl", "\n".join(MC_ROWS) + "\n"))
    assert tr.arrival_s.tolist() == [0.0, 0.0, 3.0]
    assert tr.chain(2).tolist() == [0, 2, 4]
    s = trace_stats(tr)
    assert s["block_refs"] == 8 and s["distinct_blocks"] == 5
    assert s["infinite_cache_block_hit_ratio"] == pytest.approx(3 / 8)
    # token hits: request 1 hits block 0 (512), request 2 hits blocks 0 and 2 (512 + 512)
    assert s["infinite_cache_token_hit_ratio"] == pytest.approx((512 * 3) / (600 + 1100 + 1200))


@pytest.mark.parametrize("row, field, what", [
    ('{"timestamp": 9000, "input_length": 600, "output_length": 5, "hash_ids": [0]}', "hash_ids", "needs"),
    ('{"timestamp": 9000, "input_length": 600.5, "output_length": 5, "hash_ids": [0, 1]}', "input_length", "integer"),
    ('{"timestamp": 9000, "input_length": true, "output_length": 5, "hash_ids": [0, 1]}', "input_length", "integer"),
    ('{"timestamp": 9000, "input_length": 600, "output_length": -1, "hash_ids": [0, 1]}', "output_length", ">= 0"),
    ('{"timestamp": 1000, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}', "timestamp", "sorted"),
    ('{"timestamp": 9000, "input_length": 600, "output_length": 5}', "hash_ids", "all rows or none"),
    ('{"timestamp": 9000, "input_length": 600, "output_length": 5, "hash_ids": [0, -1]}', "hash_ids", "integers >= 0"),
    # an integer timestamp beyond a float's range (was OverflowError from math.isfinite, naming no line)
    pytest.param('{"timestamp": 1%s, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}' % ("0" * 400),
                 "timestamp", "expected a finite number >= 0 (ms)", id="timestamp-beyond-float"),
])
def test_mooncake_bad_rows(tmp_path: Path, row: str, field: str, what: str) -> None:
    p = write(tmp_path, "m.jsonl", "\n".join(MC_ROWS) + "\n" + row + "\n")
    raises(p, "line 4", f"field {field!r}", what)


def test_mooncake_invalid_json_line(tmp_path: Path) -> None:
    raises(write(tmp_path, "m.jsonl", MC_ROWS[0] + "\n{not json\n"), "line 2", "not valid JSON")


def test_mooncake_block_size_param(tmp_path: Path) -> None:
    p = write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 20, "output_length": 1, "hash_ids": [5, 6]}\n')
    assert load_trace(p, block_size=16).block_size == 16
    raises(p, "needs ceil(20 / 512) = 1")


# ---------------------------------------------------------------- cache

def test_cache_round_trip_and_corruption(tmp_path: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "a.csv", AZ_HEAD + "\n".join(AZ_ROWS) + "\n")
    first = load_trace(p)
    entries = list(_cache.glob("*.npz"))
    assert len(entries) == 1
    calls = []
    real_read = azure_reader.read
    monkeypatch.setattr(azure_reader, "read", lambda *a: calls.append(1) or real_read(*a))
    second = load_trace(p)
    assert calls == [] and second.equals(first)  # served from the cache
    entries[0].write_bytes(b"not an npz")
    third = load_trace(p)
    assert calls == [1] and third.equals(first)  # corrupt entry re-parsed and rewritten
    assert load_trace(p).equals(first) and calls == [1]


def test_cache_keyed_by_content(tmp_path: Path, _cache: Path) -> None:
    a = write(tmp_path, "a.csv", AZ_HEAD + "\n".join(AZ_ROWS) + "\n")
    b = write(tmp_path, "b.dat", AZ_HEAD + "\n".join(AZ_ROWS) + "\n")
    load_trace(a)
    load_trace(b)
    assert len(list(_cache.glob("*.npz"))) == 1
    a.write_text(AZ_HEAD + AZ_ROWS[0] + "\n")
    assert len(load_trace(a)) == 1  # changed content, new entry
    assert len(list(_cache.glob("*.npz"))) == 2


def test_cache_of_mooncake_and_burstgpt(tmp_path: Path) -> None:
    m = write(tmp_path, "m.jsonl", "\n".join(MC_ROWS) + "\n")
    assert load_trace(m).equals(load_trace(m))
    b = burst(tmp_path)
    assert load_trace(b, model="GPT-4").equals(load_trace(b, model="GPT-4"))


def test_unwritable_cache_warns_but_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("SERVEGYM_CACHE", str(blocker / "cache"))
    p = write(tmp_path, "a.csv", AZ_HEAD + "\n".join(AZ_ROWS) + "\n")
    with pytest.warns(RuntimeWarning, match="trace cache not written"):
        tr = load_trace(str(p))  # a str path works as well as a Path
    assert len(tr) == 3


# ---------------------------------------------------------------- token counts beyond what the envs hold

@pytest.mark.parametrize("value", [2**31, 2**32 + 100, 10**23])
@pytest.mark.parametrize("fmt", ["azure", "burstgpt", "mooncake"])
def test_token_counts_above_max_tokens_name_line_and_field(tmp_path: Path, fmt: str, value: int) -> None:
    """A token count above MAX_TOKENS (2**31 - 1) is one error naming file, line and field in every
    format: beyond int64 it was an OverflowError with no file or line; between int32 and int64 it
    loaded, and the cluster model's int32 workload arrays wrapped it (2**32 + 100 served as 100)."""
    if fmt == "azure":
        p = write(tmp_path, "big.csv", AZ_HEAD + AZ_ROWS[0] + f"\n2023-11-16 18:15:50,{value},1\n")
        field = "ContextTokens"
    elif fmt == "burstgpt":
        p = burst(tmp_path, BG_ROWS + [f"300,ChatGPT,10,{value},{value + 10},API log"])
        field = "Response tokens"
    else:
        row = f'{{"timestamp": 9000, "input_length": 5, "output_length": {value}, "hash_ids": [7]}}'
        p = write(tmp_path, "big.jsonl", "\n".join(MC_ROWS) + "\n" + row + "\n")
        field = "output_length"
    line = {"azure": 3, "burstgpt": len(BG_ROWS) + 2, "mooncake": 4}[fmt]
    raises(p, f"line {line}", f"field {field!r}", "<= 2147483647", str(value))


def test_token_count_at_max_tokens_loads(tmp_path: Path) -> None:
    p = write(tmp_path, "edge.csv", AZ_HEAD + AZ_ROWS[0] + f"\n2023-11-16 18:15:50,{2**31 - 1},1\n")
    assert load_trace(p).prompt_tokens.tolist() == [374, 2**31 - 1]


def test_trace_refuses_token_counts_above_max_tokens() -> None:
    from traces import MAX_TOKENS, Trace, TraceMeta

    meta = TraceMeta("t", "test", "none")
    t = np.array([0.0, 1.0])
    ok = np.array([5, 5], np.int64)
    for field in ("prompt_tokens", "output_tokens"):
        big = np.array([5, MAX_TOKENS + 1], np.int64)
        arrays = {"prompt_tokens": ok, "output_tokens": ok, field: big}
        with pytest.raises(TraceError, match=rf"Trace\.{field}\[1\] = {MAX_TOKENS + 1}: must be <= {MAX_TOKENS}"):
            Trace(arrival_s=t, meta=meta, **arrays)
