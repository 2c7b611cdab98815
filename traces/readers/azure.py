"""Azure LLM inference trace CSV (2023 Splitwise release, 2024 DynamoLLM release).

Columns TIMESTAMP (wall clock, e.g. '2023-11-16 18:15:46.6805900' or
'2024-05-10 00:00:00.009930+00:00'), ContextTokens, GeneratedTokens. Timestamps become seconds
from the first row. A timestamp must begin with its date, YYYY-MM-DD (numpy would read a bare
number such as 12345 or 1700000000 as a year), and a file gives every timestamp a UTC offset or
none (a time without one cannot be placed against a time with one). Times are read to the nanosecond: a
fractional second with a nonzero digit past the ninth is refused (numpy dropped it), zeros past it are exact.
The released 2023 conversation file has no zero GeneratedTokens (minimum 7);
should a file contain some, those rows are kept and flagged in `failed` (a response that produced
no token is what a failed request looks like in a log with no status column) and the count is
recorded in the trace's transforms. A zero ContextTokens is an error: a request has a prompt.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.readers._common import check_sorted, int_column, iter_csv_chunks, no_rows_error, open_text, where
from traces.readers.formats import SPECS

COLUMNS = {"time": "TIMESTAMP", "prompt": "ContextTokens", "output": "GeneratedTokens"}
FORMAT = "azure"
DESCRIPTION = SPECS[FORMAT].description
LICENCE = SPECS[FORMAT].licence

_OFFSET = re.compile(r"^(.*\d)\s*([+-])(\d\d):?(\d\d)$")


_DIGIT = np.array([0, 1, 2, 3, 5, 6, 8, 9])  # positions of YYYY-MM-DD's digits; its dashes at 4 and 7


def _dated(arr: np.ndarray) -> np.ndarray:
    """Whether each string of ``arr`` (1-D, str_) begins with a date YYYY-MM-DD (bool [len(arr)])."""
    head = np.ascontiguousarray(arr.astype("U10")).view(np.uint32).reshape(arr.shape[0], 10)
    digits = head[:, _DIGIT]
    return ((digits >= ord("0")) & (digits <= ord("9"))).all(axis=1) & (head[:, 4] == ord("-")) & (head[:, 7] == ord("-"))


def parse_wallclock(values: list[str], lines: np.ndarray, path: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """ISO-like wall-clock strings to int64 nanoseconds (UTC when an offset is given), and whether
    each string gave a UTC offset (bool; ``Z`` and ``+00:00`` count). Raises TraceError naming the
    file, line and field of a string that is not a time or does not begin with a date YYYY-MM-DD."""
    arr = np.char.strip(np.asarray(values, dtype=np.str_))
    zoned = np.char.endswith(arr, "Z") | (np.char.find(arr, "+", 10) >= 0) | (np.char.find(arr, "-", 11) >= 0)
    arr = np.char.replace(arr, "+00:00", "")
    arr = np.where(np.char.endswith(arr, "Z"), np.char.rstrip(arr, "Z"), arr)
    offset_ns = np.zeros(arr.shape[0], dtype=np.int64)
    has_offset = (np.char.find(arr, "+", 10) >= 0) | (np.char.find(arr, "-", 11) >= 0)
    for i in np.flatnonzero(has_offset):
        m = _OFFSET.match(str(arr[i]))
        if m is None:
            raise TraceError(f"{where(path, int(lines[i]), field)}: cannot parse timestamp {values[i]!r}")
        sign = 1 if m.group(2) == "+" else -1
        offset_ns[i] = sign * (int(m.group(3)) * 3600 + int(m.group(4)) * 60) * 1_000_000_000
        arr[i] = m.group(1)
    try:
        ns = arr.astype("datetime64[ns]").astype(np.int64)
    except ValueError:
        ns = np.empty(arr.shape[0], dtype=np.int64)
        for i, s in enumerate(arr):
            try:
                ns[i] = np.datetime64(str(s), "ns").astype(np.int64)
            except ValueError:
                raise TraceError(
                    f"{where(path, int(lines[i]), field)}: cannot parse timestamp {values[i]!r} "
                    "(expected e.g. '2023-11-16 18:15:46.6805900')"
                ) from None
    nat = ns == np.iinfo(np.int64).min
    if nat.any():
        i = int(np.flatnonzero(nat)[0])
        raise TraceError(f"{where(path, int(lines[i]), field)}: timestamp {values[i]!r} is not a time")
    undated = ~_dated(arr)
    if undated.any():
        i = int(np.flatnonzero(undated)[0])
        raise TraceError(f"{where(path, int(lines[i]), field)}: timestamp {values[i]!r} does not begin with a date "
                         "YYYY-MM-DD (expected e.g. '2023-11-16 18:15:46.6805900'; a bare number would be read as a year)")
    _check_fraction(arr, values, lines, path, field)
    return ns - offset_ns, zoned


def _check_fraction(arr: np.ndarray, values: list[str], lines: np.ndarray, path: Path, field: str) -> None:
    """TraceError naming the file, line and field of the first time (``arr``: the strings without their UTC
    offsets) with a nonzero fractional-second digit past the ninth: int64 nanoseconds hold nine, and numpy drops
    (truncates) the rest, '46.6805900123' read as '46.680590012'. Zeros past the ninth are exact and pass."""
    s = np.char.rstrip(arr)
    dot = np.char.rfind(s, ".")
    digits = np.char.str_len(s) - dot - 1
    for i in np.flatnonzero((dot >= 0) & (digits > 9)):
        if str(s[i])[int(dot[i]) + 10:].strip("0"):
            raise TraceError(f"{where(path, int(lines[i]), field)}: timestamp {values[i]!r} has {int(digits[i])} "
                             "fractional-second digits; nanoseconds (9) are the finest a time is read to, and the "
                             "digits past them would be dropped")


def read(path: Path, header: list[str]) -> dict[str, object]:
    """Parse the whole file into arrays (see module docstring for the semantics)."""
    wanted = {k: next(h for h in header if h.strip().lower() == v.lower()) for k, v in COLUMNS.items()}
    ns_parts, p_parts, o_parts = [], [], []
    first_text = ""
    first_zoned: bool | None = None
    prev: tuple[int, str] | None = None
    with open_text(path) as f:
        for chunk in iter_csv_chunks(path, f, wanted):
            c, lines = chunk.columns, chunk.lines
            ns, zoned = parse_wallclock(c["time"], lines, path, COLUMNS["time"])
            if first_zoned is None:
                first_text, first_zoned, first_line = c["time"][0].strip(), bool(zoned[0]), int(lines[0])
            other = np.flatnonzero(zoned != first_zoned)
            if other.size:
                i = int(other[0])
                raise TraceError(
                    f"{where(path, int(lines[i]), COLUMNS['time'])}: {c['time'][i].strip()!r} "
                    f"{'gives a' if zoned[i] else 'has no'} UTC offset, but line {first_line}'s {first_text!r} "
                    f"{'does not' if zoned[i] else 'does'}; every timestamp of a file gives one or none (a time "
                    "without one cannot be placed against a time with one)")
            check_sorted(ns, lines, c["time"], path, COLUMNS["time"], prev)
            prev = (int(ns[-1]), c["time"][-1])
            ns_parts.append(ns)
            p_parts.append(int_column(c["prompt"], lines, path, COLUMNS["prompt"], minimum=1))
            o_parts.append(int_column(c["output"], lines, path, COLUMNS["output"], minimum=0))
    if not ns_parts:
        raise no_rows_error(path)
    ns = np.concatenate(ns_parts)
    out = np.concatenate(o_parts)
    zero = out == 0
    notes = [f"TIMESTAMP (wall clock) converted to seconds from the first row, {first_text}"]
    failed = None
    if zero.any():
        failed = zero
        notes.append(f"flagged {int(zero.sum())} rows with GeneratedTokens == 0 as failed (kept)")
    return {
        "arrival_s": (ns - ns[0]).astype(np.float64) / 1e9,
        "prompt_tokens": np.concatenate(p_parts),
        "output_tokens": out,
        "failed": failed,
        "notes": notes,
    }
