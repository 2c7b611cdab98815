"""Trace formats (issue 19): the format table, Bailian/Qwen files, time units and origin, opaque hash ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traces import TraceError, load_trace
from traces.readers import FORMATS, SPECS


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEGYM_CACHE", str(tmp_path / "cache"))


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bailian_rows() -> list[dict]:
    # Two conversations: chat 7 (turns 1, 2, 3) and chat 9 (one turn); 16-token blocks.
    return [
        {"chat_id": 7, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 40, "output_length": 10,
         "type": "text", "turn": 1, "hash_ids": [901, 902, 903]},
        {"chat_id": 9, "parent_chat_id": -1, "timestamp": 1.25, "input_length": 16, "output_length": 3,
         "type": "search", "turn": 1, "hash_ids": [5]},
        {"chat_id": 8, "parent_chat_id": 7, "timestamp": 3.0, "input_length": 70, "output_length": 0,
         "type": "text", "turn": 2, "hash_ids": [901, 902, 904, 905, 906]},
        {"chat_id": 12, "parent_chat_id": 8, "timestamp": 9.75, "input_length": 90, "output_length": 4,
         "type": "image", "turn": 3, "hash_ids": [901, 902, 904, 905, 907, 908]},
    ]


def test_every_reader_has_one_row_in_the_format_table() -> None:
    assert set(FORMATS) == set(SPECS)
    for name, spec in SPECS.items():
        assert FORMATS[name].DESCRIPTION == spec.description
        assert spec.time_unit in ("s", "ms", "wallclock")
    assert (SPECS["mooncake"].time_unit, SPECS["mooncake"].block_size) == ("ms", 512)
    assert (SPECS["bailian"].time_unit, SPECS["bailian"].block_size) == ("s", 16)
    assert SPECS["burstgpt"].time_unit == "s" and SPECS["azure"].time_unit == "wallclock"


def test_bailian_file_is_recognised_in_seconds_with_16_token_blocks_and_turns(tmp_path: Path) -> None:
    tr = load_trace(jsonl(tmp_path / "qwen.jsonl", bailian_rows()))
    assert "Bailian" in tr.meta.source
    assert tr.block_size == 16
    assert tr.arrival_s.tolist() == [0.0, 0.75, 2.5, 9.25]  # seconds, from the first arrival
    assert tr.parent.tolist() == [-1, -1, 0, 2] and tr.turn.tolist() == [1, 1, 2, 3]
    assert tr.failed.tolist() == [False, False, True, False]
    assert tr.tenant.tolist() == [0, 1, 0, 2]
    assert any("0=text, 1=search, 2=image" in t for t in tr.meta.transforms)
    # shared prefix blocks keep equal ids after remapping
    assert tr.chain(2)[:2].tolist() == tr.chain(0)[:2].tolist() == tr.chain(3)[:2].tolist()
    assert tr.chain(3)[:4].tolist() == tr.chain(2)[:4].tolist()
    sub = tr.select([0, 3])  # turn 3's parent (turn 2) is not kept
    assert sub.parent.tolist() == [-1, -1] and sub.turn.tolist() == [1, 3]
    sub = tr.select([0, 2])
    assert sub.parent.tolist() == [-1, 0]


def test_bailian_errors_name_file_line_and_field(tmp_path: Path) -> None:
    rows = bailian_rows()
    rows[3]["parent_chat_id"] = 99
    tr = load_trace(jsonl(tmp_path / "orphan.jsonl", rows))
    assert tr.parent.tolist()[3] == -1 and any("not in the file" in t for t in tr.meta.transforms)
    rows = bailian_rows()
    rows[1]["parent_chat_id"] = 12  # a later line
    p = jsonl(tmp_path / "later.jsonl", rows)
    with pytest.raises(TraceError, match=r"later.jsonl: line 2, field 'parent_chat_id': 12 is the chat_id of a later"):
        load_trace(p)
    rows = bailian_rows()
    rows[2]["turn"] = 0
    with pytest.raises(TraceError, match=r"line 3, field 'turn': expected an integer >= 1"):
        load_trace(jsonl(tmp_path / "turn.jsonl", rows))


def test_ambiguous_jsonl_names_both_candidate_formats(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("turn", "type")} for r in bailian_rows()]
    p = jsonl(tmp_path / "amb.jsonl", rows)
    with pytest.raises(TraceError) as e:
        load_trace(p)
    msg = str(e.value)
    assert "ambiguous" in msg and "Mooncake" in msg and "Bailian" in msg and "format=" in msg
    # the caller says which: Mooncake fields, seconds and 16-token blocks stated explicitly
    tr = load_trace(p, format="mooncake", time_unit="s", block_size=16)
    assert tr.arrival_s.tolist() == [0.0, 0.75, 2.5, 9.25] and tr.block_size == 16


def test_fractional_mooncake_timestamps_need_a_stated_unit(tmp_path: Path) -> None:
    rows = [{"timestamp": t, "input_length": 10, "output_length": 2} for t in (0.0, 0.5, 1.5)]
    p = jsonl(tmp_path / "frac.jsonl", rows)
    with pytest.raises(TraceError, match=r"line 2, field 'timestamp': fractional value 0.5; ambiguous format.*time_unit"):
        load_trace(p)
    assert load_trace(p, time_unit="s").arrival_s.tolist() == [0.0, 0.5, 1.5]
    assert load_trace(p, time_unit="ms").arrival_s.tolist() == [0.0, 0.0005, 0.0015]
    with pytest.raises(TraceError, match="time_unit must be one of"):
        load_trace(p, time_unit="minutes")


def test_time_unit_does_not_apply_to_wall_clock_files(tmp_path: Path) -> None:
    p = tmp_path / "az.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,10,3\n")
    with pytest.raises(TraceError, match="time_unit='s' does not apply: Azure"):
        load_trace(p, time_unit="s")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=6), st.integers(0, 5),
       st.floats(0, 1e7, allow_nan=False), st.lists(st.integers(0, 2000), min_size=1, max_size=8))
def test_hash_ids_are_opaque_and_time_starts_at_the_first_arrival(tmp_path: Path, pool: list[int], seed: int,
                                                                   offset_ms: float, gaps: list[int]) -> None:
    """Any non-negative ids (64-bit included) map to dense ids with equal id <=> equal dense id;
    a file whose clock starts at an offset loads exactly as the same file started at 0."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(gaps).astype(np.float64)
    chains = [[pool[i] for i in rng.integers(0, len(pool), size=int(rng.integers(1, 4)))] for _ in t]
    rows = [{"timestamp": float(ts), "input_length": 512 * len(c), "output_length": 3, "hash_ids": c}
            for ts, c in zip(t, chains)]
    base = load_trace(jsonl(tmp_path / "base.jsonl", rows), time_unit="ms")
    off = round(offset_ms)
    shifted = [dict(r, timestamp=r["timestamp"] + off) for r in rows]
    late = load_trace(jsonl(tmp_path / "late.jsonl", shifted), time_unit="ms")
    np.testing.assert_allclose(late.arrival_s, base.arrival_s, atol=1e-6)
    assert late.arrival_s[0] == 0.0
    flat = [h for c in chains for h in c]
    dense = base.block_ids.tolist()
    assert sorted(set(dense)) == list(range(len(set(flat))))
    assert len(set(zip(flat, dense))) == len(set(flat))


def test_named_format_must_fit_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bg.csv"
    p.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,4,2,6,API log\n")
    assert len(load_trace(p, format="burstgpt")) == 1
    with pytest.raises(TraceError, match=r"format='azure' needs column\(s\) \['ContextTokens', 'GeneratedTokens'\]"):
        load_trace(p, format="azure")
    with pytest.raises(TraceError, match="the format named is JSONL"):
        load_trace(p, format="mooncake")
    with pytest.raises(TraceError, match="format='parquet' is not a supported format"):
        load_trace(p, format="parquet")


@pytest.mark.parametrize("name, text, column, fields", [
    ("azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens,timestamp\n"
                  "2023-11-16 18:15:46.68,374,44,x\n2023-11-16 18:15:50.99,396,109,y\n", "TIMESTAMP", "1, 4"),
    ("bg.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Response tokens\n"
               "5,ChatGPT,4,2,6,API log,9\n6,ChatGPT,4,3,7,API log,9\n", "Response tokens", "4, 7"),
])
def test_a_column_named_twice_in_a_csv_header_is_refused(tmp_path: Path, name: str, text: str, column: str,
                                                          fields: str) -> None:
    """The first of the two columns was read and the other ignored, whichever held the data."""
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(TraceError) as err:
        load_trace(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: line 1: column {column!r} appears 2 times in the header (fields {fields} of ")
    assert msg.endswith("which one holds the data is ambiguous") and "\n" not in msg


def test_a_key_given_twice_in_a_jsonl_record_is_refused(tmp_path: Path) -> None:
    """json keeps the last of two values: {"timestamp": 2000, ..., "timestamp": 3000} loaded as 3000."""
    row = '{"timestamp": 1000, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n'
    p = tmp_path / "twice.jsonl"
    p.write_text(row + '{"timestamp": 2000, "input_length": 600, "output_length": 5, "hash_ids": [1, 3], '
                       '"timestamp": 3000}\n')
    with pytest.raises(TraceError, match=rf"^{p}: line 2, field 'timestamp': given 2 times in one object "
                                         r"\(2000, 3000\); which value holds is ambiguous$"):
        load_trace(p)
    assert len(load_trace(jsonl(tmp_path / "once.jsonl", [json.loads(row)] * 2))) == 2
