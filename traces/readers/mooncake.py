"""Mooncake trace JSONL (Qin et al., FAST 2025; Kimi production traffic), and the JSONL parsing
that the Bailian reader shares.

One JSON object per line: timestamp (ms from the trace start; see ``formats.SPECS``),
input_length, output_length and hash_ids, the prefix-block hashes of the prompt (512 tokens a
block; equal ids mean a reusable prefix KV block). A chain must have ceil(input_length /
block_size) ids. Hash ids are opaque keys: any non-negative integer, including unsigned 64-bit
content hashes (AIPerf ``mooncake_trace`` files, salted SipHash values), is remapped to a dense id
in order of first appearance (equal id = same block; a file whose ids already are 0, 1, 2 ... in
order of appearance, as the released Mooncake traces are, keeps them). A zero output_length is
kept and flagged in `failed` (as for Azure files); other fields are ignored.

Timestamps are returned in the file's unit (``time_raw``); ``traces.load`` converts them.
Mooncake timestamps are integer milliseconds, so a file with fractional timestamps is refused
unless the caller states the unit (``time_unit=``): it may be a seconds-based trace such as
Bailian's with its identifying fields stripped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.readers._common import no_rows_error, open_text
from traces.readers.formats import SPECS
from traces.trace import MAX_TOKENS
from traces.checks import is_integer, is_real

FORMAT = "mooncake"
DESCRIPTION = SPECS[FORMAT].description
LICENCE = SPECS[FORMAT].licence
REQUIRED = SPECS[FORMAT].fields
BLOCK_SIZE = SPECS[FORMAT].block_size


def _where(path: Path, line: int, field: str) -> str:
    return f"{path}: line {line}, field {field!r}"


def _integer(v: object, path: Path, line: int, field: str, minimum: int, maximum: int | None = MAX_TOKENS) -> int:
    """An integer field in [minimum, maximum] (integral floats accepted; `maximum` None: unbounded,
    for opaque ids). Raises TraceError naming file, line and field."""
    if not is_real(v):
        raise TraceError(f"{_where(path, line, field)}: expected an integer, got {v!r}")
    if isinstance(v, float) and not (math.isfinite(v) and v == int(v)):
        raise TraceError(f"{_where(path, line, field)}: expected an integer, got {v!r}")
    if v < minimum:
        raise TraceError(f"{_where(path, line, field)}: expected an integer >= {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        name = " (MAX_TOKENS)" if maximum == MAX_TOKENS else ""
        raise TraceError(f"{_where(path, line, field)}: expected an integer <= {maximum}{name}, got {v!r}")
    return int(v)


class _DuplicateKey(Exception):
    def __init__(self, key: str, values: list[object]):
        self.key, self.values = key, values


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object's dict; ``_DuplicateKey`` where a key repeats (``json`` would keep the last value)."""
    out = dict(pairs)
    if len(out) < len(pairs):  # a repeat: name the first key seen twice and every value it was given
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key, [v for k, v in pairs if k == key])
            seen.add(key)
    return out


def records(path: Path, required: tuple[str, ...]):
    """Yield (line number, record dict) for every non-blank line; errors name file and line (and
    the field, for a key given twice in one object)."""
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as e:
                raise TraceError(f"{path}: line {line_no}: not valid JSON ({e.msg} at column {e.colno})") from None
            except _DuplicateKey as e:
                raise TraceError(f"{_where(path, line_no, e.key)}: given {len(e.values)} times in one object "
                                 f"({', '.join(map(repr, e.values))}); which value holds is ambiguous") from None
            if not isinstance(rec, dict):
                raise TraceError(f"{path}: line {line_no}: expected a JSON object, got {type(rec).__name__}")
            for key in required:
                if key not in rec:
                    raise TraceError(f"{_where(path, line_no, key)}: missing (required: {', '.join(required)})")
            yield line_no, rec


def read(path: Path, block_size: int = BLOCK_SIZE, fmt: str = FORMAT, time_unit_given: bool = False,
         extra=None) -> dict[str, object]:
    """Parse the whole file; `block_size` is the tokens per hash id (512 for Mooncake).

    ``extra(line_no, rec)`` (the Bailian reader's hook) is called on every record after the
    common fields are checked. Returns arrays: ``time_raw`` (float64, the file's unit),
    ``prompt_tokens``, ``output_tokens``, ``failed`` (or None), ``block_ids`` / ``block_offsets`` /
    ``block_size`` when the file has hash_ids, and ``notes``.
    """
    spec = SPECS[fmt]
    t: list[float] = []
    p: list[int] = []
    o: list[int] = []
    ids: list[int] = []
    offsets: list[int] = [0]
    dense: dict[int, int] = {}
    has_hash: bool | None = None
    fractional_line, fractional_value = 0, 0.0
    unit = spec.time_unit
    for line_no, rec in records(path, spec.fields):
        ts = rec["timestamp"]
        if not is_real(ts, finite=True) or ts < 0:  # finite: an integer beyond a float's range too
            raise TraceError(f"{_where(path, line_no, 'timestamp')}: expected a finite number >= 0 ({unit}), got {ts!r}")
        if t and ts < t[-1]:
            raise TraceError(
                f"{_where(path, line_no, 'timestamp')}: {ts!r} is earlier than the previous row's "
                f"{t[-1]:g}; timestamps must be sorted"
            )
        if not fractional_line and isinstance(ts, float) and ts != int(ts):
            fractional_line, fractional_value = line_no, ts
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
            if not isinstance(h, list):
                raise TraceError(f"{_where(path, line_no, 'hash_ids')}: expected a list of integers >= 0, got {h!r}")
            for k, x in enumerate(h):
                if not is_integer(x) or x < 0:
                    raise TraceError(
                        f"{_where(path, line_no, 'hash_ids')}: element {k} is {x!r}; hash ids must be "
                        "integers >= 0 (opaque keys, any size)"
                    )
            need = -(-n_in // block_size)
            if len(h) != need:
                raise TraceError(
                    f"{_where(path, line_no, 'hash_ids')}: {len(h)} ids, but input_length {n_in} needs "
                    f"ceil({n_in} / {block_size}) = {need} blocks"
                )
            ids.extend([dense.setdefault(x, len(dense)) for x in h])
            offsets.append(len(ids))
        if extra is not None:
            extra(line_no, rec)
        t.append(ts)
        p.append(n_in)
        o.append(n_out)
    if not t:
        raise no_rows_error(path)
    if fractional_line and unit == "ms" and not time_unit_given:
        raise TraceError(
            f"{_where(path, fractional_line, 'timestamp')}: fractional value {fractional_value!r}; ambiguous format: "
            f"{spec.description} has integer milliseconds, while {SPECS['bailian'].description} has "
            "seconds; pass time_unit='s' or time_unit='ms' (trace_params) to say which"
        )
    out = np.asarray(o, dtype=np.int64)
    zero = out == 0
    notes = [f"flagged {int(zero.sum())} rows with output_length == 0 as failed (kept)"] if zero.any() else []
    result: dict[str, object] = {
        "time_raw": np.asarray(t, dtype=np.float64),
        "prompt_tokens": np.asarray(p, dtype=np.int64),
        "output_tokens": out,
        "failed": zero if zero.any() else None,
        "notes": notes,
    }
    if has_hash:
        result["block_ids"] = np.asarray(ids, dtype=np.int64)
        result["block_offsets"] = np.asarray(offsets, dtype=np.int64)
        result["block_size"] = block_size
        if any(k != v for k, v in dense.items()):
            notes.append(f"hash ids remapped to dense ids 0..{len(dense) - 1} in order of first appearance")
    return result
