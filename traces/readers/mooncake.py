"""Mooncake trace JSONL (Qin et al., FAST 2025; Kimi production traffic).

One JSON object per line: timestamp (ms from the trace start), input_length, output_length and
hash_ids, the remapped prefix-block hashes of the prompt (512 tokens a block; equal ids mean a
reusable prefix KV block). A chain must have ceil(input_length / block_size) ids. A zero
output_length is kept and flagged in `failed` (as for Azure files); other fields are ignored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.readers._common import no_rows_error, open_text

FORMAT = "mooncake"
DESCRIPTION = "Mooncake trace JSONL (timestamp ms, input_length, output_length, hash_ids)"
LICENCE = "unknown for this file; the public Mooncake traces are Apache-2.0 (kvcache-ai/Mooncake)"
REQUIRED = ("timestamp", "input_length", "output_length")
BLOCK_SIZE = 512


def _where(path: Path, line: int, field: str) -> str:
    return f"{path}: line {line}, field {field!r}"


def _integer(v: object, path: Path, line: int, field: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TraceError(f"{_where(path, line, field)}: expected an integer, got {v!r}")
    if isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
        raise TraceError(f"{_where(path, line, field)}: expected an integer, got {v!r}")
    if v < minimum:
        raise TraceError(f"{_where(path, line, field)}: expected an integer >= {minimum}, got {v!r}")
    return int(v)


def read(path: Path, block_size: int = BLOCK_SIZE) -> dict[str, object]:
    """Parse the whole file; `block_size` is the tokens per hash id (512 for Mooncake)."""
    t: list[float] = []
    p: list[int] = []
    o: list[int] = []
    ids: list[int] = []
    offsets: list[int] = [0]
    has_hash: bool | None = None
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise TraceError(f"{path}: line {line_no}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise TraceError(f"{path}: line {line_no}: expected a JSON object, got {type(rec).__name__}")
            for key in REQUIRED:
                if key not in rec:
                    raise TraceError(f"{_where(path, line_no, key)}: missing (required: {', '.join(REQUIRED)})")
            ts = rec["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
                raise TraceError(f"{_where(path, line_no, 'timestamp')}: expected a finite number >= 0 (ms), got {ts!r}")
            if t and ts / 1000.0 < t[-1]:
                raise TraceError(
                    f"{_where(path, line_no, 'timestamp')}: {ts!r} is earlier than the previous row's "
                    f"{t[-1] * 1000.0:g}; timestamps must be sorted"
                )
            n_in = _integer(rec["input_length"], path, line_no, "input_length", 1)
            n_out = _integer(rec["output_length"], path, line_no, "output_length", 0)
            row_has = "hash_ids" in rec
            if has_hash is None:
                has_hash = row_has
            elif row_has != has_hash:
                raise TraceError(
                    f"{_where(path, line_no, 'hash_ids')}: {'present' if row_has else 'missing'} here but "
                    f"{'present' if has_hash else 'missing'} on earlier rows; all rows or none must have it"
                )
            if row_has:
                h = rec["hash_ids"]
                if not isinstance(h, list) or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in h):
                    raise TraceError(f"{_where(path, line_no, 'hash_ids')}: expected a list of integers >= 0")
                need = -(-n_in // block_size)
                if len(h) != need:
                    raise TraceError(
                        f"{_where(path, line_no, 'hash_ids')}: {len(h)} ids, but input_length {n_in} needs "
                        f"ceil({n_in} / {block_size}) = {need} blocks"
                    )
                ids.extend(h)
                offsets.append(len(ids))
            t.append(ts / 1000.0)
            p.append(n_in)
            o.append(n_out)
    if not t:
        raise no_rows_error(path)
    out = np.asarray(o, dtype=np.int64)
    zero = out == 0
    result: dict[str, object] = {
        "arrival_s": np.asarray(t, dtype=np.float64),
        "prompt_tokens": np.asarray(p, dtype=np.int64),
        "output_tokens": out,
        "failed": zero if zero.any() else None,
        "notes": [f"flagged {int(zero.sum())} rows with output_length == 0 as failed (kept)"] if zero.any() else [],
    }
    if has_hash:
        result["block_ids"] = np.asarray(ids, dtype=np.int64)
        result["block_offsets"] = np.asarray(offsets, dtype=np.int64)
        result["block_size"] = block_size
    return result
