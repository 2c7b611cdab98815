"""Shared pieces of the file readers: opening (plain or gzip), CSV chunking, typed columns.

Columns are converted a chunk at a time with numpy; only when a chunk fails to convert do we walk
it row by row, so that the error can name the exact line and field without slowing good files.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.trace import MAX_TOKENS

CHUNK_ROWS = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


class _CheckedGzip(gzip.GzipFile):
    """A gzip stream whose corruption (truncated, bad CRC or length, bad deflate data) is a
    ``TraceError`` naming the file, wherever a reader happens to be reading it."""

    def _checked(name):  # noqa: N805 - builds the wrapped methods below
        base = getattr(gzip.GzipFile, name)

        def method(self, *args):
            try:
                return base(self, *args)
            except (EOFError, gzip.BadGzipFile, zlib.error) as e:
                raise TraceError(f"{self.name}: not a valid gzip file ({e})") from None
        method.__name__ = name
        return method

    read = _checked("read")
    read1 = _checked("read1")
    readinto = _checked("readinto")
    readinto1 = _checked("readinto1")
    readline = _checked("readline")
    peek = _checked("peek")
    del _checked


def open_text(path: Path) -> io.TextIOBase:
    """Open a trace file as UTF-8 text (a BOM is skipped); gzip is detected by content.

    Raises ``TraceError`` naming the file when a gzip file is corrupt or truncated (on the read
    that meets it)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    raw = _CheckedGzip(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def where(path: Path, line: int, field: str) -> str:
    """The standard error prefix: file, 1-based line (header = line 1 for CSV) and field."""
    return f"{path}: line {line}, field {field!r}"


@dataclass
class CsvChunk:
    """Up to CHUNK_ROWS data rows: one list of strings per wanted column, and each row's line."""

    lines: np.ndarray  # int64, 1-based physical line where each row ends
    columns: dict[str, list[str]]


def iter_csv_chunks(path: Path, f: io.TextIOBase, wanted: dict[str, str]) -> Iterator[CsvChunk]:
    """Stream a CSV whose header (already checked) has the columns in `wanted` (key -> header name).

    Blank lines are not requests and are skipped (they carry no data); a row with a different
    number of fields than the header is an error naming its line, and so is a wanted column that
    the header names twice (case-insensitively), naming line 1.
    """
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader)]
    for name in wanted.values():  # the first of two was read and the other ignored
        at = [i + 1 for i, h in enumerate(header) if h.lower() == name.strip().lower()]
        if len(at) > 1:
            raise TraceError(f"{path}: line 1: column {name!r} appears {len(at)} times in the header (fields "
                             f"{', '.join(map(str, at))} of {', '.join(header)}); which one holds the data is ambiguous")
    index = {key: header.index(name) for key, name in wanted.items()}
    width = len(header)
    cols: dict[str, list[str]] = {k: [] for k in wanted}
    lines: list[int] = []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise TraceError(
                f"{path}: line {reader.line_num}: expected {width} fields as in the header "
                f"({', '.join(header)}), got {len(row)}"
            )
        for k, j in index.items():
            cols[k].append(row[j])
        lines.append(reader.line_num)
        if len(lines) == CHUNK_ROWS:
            yield CsvChunk(np.asarray(lines, dtype=np.int64), cols)
            cols = {k: [] for k in wanted}
            lines = []
    if lines:
        yield CsvChunk(np.asarray(lines, dtype=np.int64), cols)


def _int_or_none(s: str) -> int | None:
    s = s.strip()
    try:
        return int(s)
    except ValueError:
        pass
    try:
        x = float(s)
    except ValueError:
        return None
    if math.isfinite(x) and x == int(x):
        return int(x)
    return None


def _no_underscores(values: list[str], lines: np.ndarray, path: Path, field: str, what: str) -> None:
    """TraceError naming the first value holding '_': Python's int() and float(), which numpy's conversion uses,
    read '1_0' as 10 (a digit separator of Python source, not of a CSV number)."""
    bad = np.flatnonzero(np.char.find(np.asarray(values, dtype=np.str_), "_") >= 0)
    if bad.size:
        i = int(bad[0])
        raise TraceError(f"{where(path, int(lines[i]), field)}: expected {what}, got {values[i]!r}")


def int_column(values: list[str], lines: np.ndarray, path: Path, field: str, minimum: int,
               maximum: int = MAX_TOKENS) -> np.ndarray:
    """Parse integer token counts in [minimum, maximum] (int64); integral floats such as '12.0' are
    accepted, nothing is rounded or clamped. Raises TraceError naming file, line and field of the first
    value that is not an integer or lies outside the range (`maximum`: traces.MAX_TOKENS by default)."""
    _no_underscores(values, lines, path, field, "an integer")
    try:
        out = np.asarray(values, dtype=np.str_).astype(np.int64)
    except (ValueError, OverflowError):
        out = np.empty(len(values), dtype=np.int64)
        for i, s in enumerate(values):
            v = _int_or_none(s)
            if v is None:
                raise TraceError(f"{where(path, int(lines[i]), field)}: expected an integer, got {s!r}") from None
            if not minimum <= v <= maximum:
                break
            out[i] = v
        else:
            return _check_range(out, values, lines, path, field, minimum, maximum)
        raise _range_error(values[i], lines[i], path, field, minimum, maximum, v < minimum)
    return _check_range(out, values, lines, path, field, minimum, maximum)


def _check_range(out: np.ndarray, values: list[str], lines: np.ndarray, path: Path, field: str, minimum: int,
                 maximum: int) -> np.ndarray:
    bad = (out < minimum) | (out > maximum)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _range_error(values[i], lines[i], path, field, minimum, maximum, bool(out[i] < minimum))
    return out


def _range_error(raw: str, line: int, path: Path, field: str, minimum: int, maximum: int, low: bool) -> TraceError:
    bound = f">= {minimum}" if low else f"<= {maximum}" + (" (MAX_TOKENS)" if maximum == MAX_TOKENS else "")
    return TraceError(f"{where(path, int(line), field)}: expected an integer {bound}, got {raw.strip()!r}")


def float_column(values: list[str], lines: np.ndarray, path: Path, field: str) -> np.ndarray:
    """Parse finite floats (NaN and infinities are errors, not data)."""
    _no_underscores(values, lines, path, field, "a number")
    try:
        out = np.asarray(values, dtype=np.str_).astype(np.float64)
    except ValueError:
        out = np.empty(len(values), dtype=np.float64)
        for i, s in enumerate(values):
            try:
                out[i] = float(s)
            except ValueError:
                raise TraceError(f"{where(path, int(lines[i]), field)}: expected a number, got {s!r}") from None
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(f"{where(path, int(lines[i]), field)}: expected a finite number, got {values[i]!r}")
    return out


def check_sorted(t: np.ndarray, lines: np.ndarray, raw: list[str], path: Path, field: str,
                 prev: tuple[float | int, str] | None) -> None:
    """Timestamps must be non-decreasing across the file; `prev` = (value, text) ending the last chunk."""
    if prev is not None and t.size and t[0] < prev[0]:
        raise TraceError(
            f"{where(path, int(lines[0]), field)}: {raw[0].strip()!r} is earlier than the previous "
            f"row's {prev[1].strip()!r}; timestamps must be sorted"
        )
    dec = np.diff(t) < 0
    if dec.any():
        i = int(np.flatnonzero(dec)[0]) + 1
        raise TraceError(
            f"{where(path, int(lines[i]), field)}: {raw[i].strip()!r} is earlier than the previous "
            f"row's {raw[i - 1].strip()!r}; timestamps must be sorted"
        )


def empty_file_error(path: Path) -> TraceError:
    return TraceError(f"{path}: empty file (no header and no data rows)")


def no_rows_error(path: Path) -> TraceError:
    return TraceError(f"{path}: no data rows after the header")
