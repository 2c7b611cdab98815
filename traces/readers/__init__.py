"""File readers, chosen by content (header or first record), never by file name."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from traces.errors import TraceError
from traces.readers import azure, bailian, burstgpt, mooncake
from traces.readers._common import empty_file_error, open_text
from traces.readers.formats import SPECS

__all__ = ["Sniffed", "sniff", "FORMATS", "SPECS"]

FORMATS = {azure.FORMAT: azure, burstgpt.FORMAT: burstgpt, mooncake.FORMAT: mooncake, bailian.FORMAT: bailian}
_BAILIAN_ONLY = tuple(f for f in SPECS["bailian"].fields if f not in SPECS["mooncake"].fields and f != "hash_ids")
_CSV_FORMATS = ((azure.FORMAT, tuple(azure.COLUMNS.values())), (burstgpt.FORMAT, tuple(burstgpt.COLUMNS.values())))


@dataclass(frozen=True)
class Sniffed:
    """What `sniff` found: the format name and, for CSV, the header fields."""

    format: str
    header: tuple[str, ...] = ()


def _supported() -> str:
    return "; ".join(m.DESCRIPTION for m in FORMATS.values())


def sniff(path: Path, container: str | None = None) -> Sniffed:
    """Identify the format from the first non-blank line; errors name the file and what was seen.

    With ``container`` ("csv" or "jsonl", when the caller names the format) only check that the
    file is of that kind and return its CSV header; the format name returned is then a placeholder.
    """
    try:
        f = open_text(path)
    except OSError as e:
        raise TraceError(f"{path}: cannot open ({e.strerror or e})") from None
    with f:
        try:
            first = ""
            line_no = 0
            for line_no, first in enumerate(f, start=1):
                if first.strip():
                    break
            else:
                raise empty_file_error(path)
        except UnicodeDecodeError:
            raise TraceError(f"{path}: not a UTF-8 text file; supported formats: {_supported()}") from None
    text = first.strip()
    if container is not None:
        if (container == "jsonl") != text.startswith("{"):
            raise TraceError(f"{path}: line {line_no}: the format named is {container.upper()}, but the file "
                             f"{'is' if text.startswith('{') else 'is not'} JSON lines")
        if container == "jsonl":
            return Sniffed("")
        if line_no != 1:
            raise TraceError(f"{path}: the header must be on line 1 (found on line {line_no})")
        return Sniffed("", tuple(h.strip() for h in next(csv.reader([text]))))
    if text.startswith("{"):
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            raise TraceError(f"{path}: line {line_no}: starts like JSON but is not valid JSON ({e.msg})") from None
        if isinstance(rec, dict) and all(k in rec for k in bailian.REQUIRED):
            return Sniffed(bailian.FORMAT)
        if isinstance(rec, dict) and all(k in rec for k in mooncake.REQUIRED):
            some = [k for k in _BAILIAN_ONLY if k in rec]
            if some:
                missing = [k for k in bailian.REQUIRED if k not in rec]
                raise TraceError(
                    f"{path}: line {line_no}: ambiguous format: the record has the fields of "
                    f"{mooncake.DESCRIPTION} and {some} of {bailian.DESCRIPTION} (missing {missing}); "
                    "the two differ in time unit (ms / s) and block size (512 / 16 tokens): pass "
                    "format='mooncake' or format='bailian' (trace_params) to say which"
                )
            return Sniffed(mooncake.FORMAT)
        keys = sorted(rec) if isinstance(rec, dict) else []
        if isinstance(rec, dict) and any(k in rec for k in mooncake.REQUIRED):
            missing = [k for k in mooncake.REQUIRED if k not in rec]
            raise TraceError(f"{path}: line {line_no}: Mooncake JSONL record is missing field(s) {missing} (has {keys})")
        raise TraceError(
            f"{path}: line {line_no}: JSON record with keys {keys} is not a supported format; "
            f"supported: {_supported()}"
        )
    header = tuple(h.strip() for h in next(csv.reader([text])))
    lower = {h.lower() for h in header}
    for name, cols in _CSV_FORMATS:
        if all(c.lower() in lower for c in cols):
            if line_no != 1:
                raise TraceError(f"{path}: the header must be on line 1 (found on line {line_no})")
            return Sniffed(name, header)
    best = max(_CSV_FORMATS, key=lambda fc: sum(c.lower() in lower for c in fc[1]))
    hits = sum(c.lower() in lower for c in best[1])
    if hits >= 2:
        missing = [c for c in best[1] if c.lower() not in lower]
        raise TraceError(
            f"{path}: line {line_no}: header looks like {FORMATS[best[0]].DESCRIPTION} but is missing "
            f"column(s) {missing}; header was {list(header)}"
        )
    shown = text if len(text) <= 120 else text[:117] + "..."
    raise TraceError(f"{path}: unknown trace format (line {line_no}: {shown!r}); supported: {_supported()}")
