"""load_trace: one entry point for built-in generators and trace files of any supported format."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np

from traces import cache
from traces.errors import TraceError
from traces.readers import FORMATS, SPECS, Sniffed, burstgpt, sniff
from traces.readers.formats import TIME_UNITS, time_divisor
from traces.trace import Trace, TraceMeta
from traces.checks import is_integer

__all__ = ["load_trace", "load_file"]


def load_trace(name_or_path: str | Path, *, seed: int = 0, **params: object) -> Trace:
    """A built-in trace by name (generator; `params` forwarded), a trace file by path, or a ServeGen
    model folder (``traces.servegen``: production rate records replayed as arrivals; `params`
    forwarded).

    File formats are recognised by content, so a file's name or extension does not matter.
    `seed` affects generators and ServeGen's arrival draws; files are read exactly as they are.
    """
    from traces.builtin import BUILTIN_TRACES, resolve_builtin

    if not isinstance(name_or_path, (str, os.PathLike)):  # was Path()'s TypeError 'expected str, bytes or os.PathLike'
        raise TraceError(f"trace must be a built-in name or a file path, got {name_or_path!r} "
                         f"({type(name_or_path).__name__})")
    gen = resolve_builtin(name_or_path) if isinstance(name_or_path, str) else None
    if gen is not None:
        _check_params(gen, f"built-in trace {name_or_path!r}", seed=seed, **params)
        return gen(seed=seed, **params)
    path = Path(name_or_path)
    if not path.exists():
        raise TraceError(
            f"unknown trace {str(name_or_path)!r}: not a built-in name (known: {', '.join(sorted(BUILTIN_TRACES))}) "
            f"and no file at {path.resolve()}"
        )
    if path.is_dir():
        from traces import servegen

        if not servegen.is_servegen_dir(path):
            raise TraceError(f"{path}: is a directory, expected a trace file (or a ServeGen model folder of "
                             "chunk-<client>-trace.csv files)")
        _check_params(servegen.servegen_trace, f"ServeGen records {path}", path, seed=seed, **params)
        return servegen.servegen_trace(path, seed=seed, **params)  # type: ignore[arg-type]
    if not path.is_file():
        raise TraceError(f"{path}: is not a regular file, expected a trace file")
    try:
        return load_file(path, **params)
    except TraceError as e:
        from traces import servegen

        if servegen.is_record_file(path) and "unknown trace format" in str(e):  # formats go by content, not name
            raise TraceError(f"{path}: one client's ServeGen rate records, not a trace of requests; pass its model "
                             f"folder {path.parent} (every client's records, traces.servegen)") from None
        raise


def _check_params(fn, label: str, *args: object, **params: object) -> None:
    """TraceError naming `label`, the mismatch and the keyword parameters `fn` accepts (those after
    the positional `args`) when ``fn(*args, **params)`` would not bind."""
    sig = inspect.signature(fn)
    try:
        sig.bind(*args, **params)
    except TypeError as e:
        accepted = list(sig.parameters)[len(args):]
        raise TraceError(f"{label}: {e}; accepted parameters: {', '.join(accepted)}") from None


def load_file(path: Path, **params: object) -> Trace:
    """Parse (or fetch from the cache) a trace file and apply format parameters.

    Parameters every format takes: ``format`` (a name of ``traces.readers.SPECS``: skip
    recognition, e.g. for a file whose fields fit two formats) and ``time_unit`` ("s", "ms",
    "us", "ns": override the format's unit; not for wall-clock formats). JSONL formats take
    ``block_size`` (tokens per hash id), BurstGPT ``model`` and ``log_type`` filters. Times are
    converted to seconds and measured from the first arrival (recorded in the transforms).
    Raises TraceError naming the file and the parameter or row at fault.
    """
    fmt = params.pop("format", None)
    if fmt is None:
        found = sniff(path)
    else:
        if fmt not in FORMATS:
            raise TraceError(f"{path}: format={fmt!r} is not a supported format; known: {', '.join(FORMATS)}")
        found = sniff(path, container=SPECS[fmt].container)  # type: ignore[index]
        found = Sniffed(fmt, found.header)  # type: ignore[arg-type]
        have = {h.lower() for h in found.header}
        missing = [c for c in SPECS[fmt].fields if c.lower() not in have] if found.header else []  # type: ignore[index]
        if missing:
            raise TraceError(f"{path}: format={fmt!r} needs column(s) {missing}; header was {list(found.header)}")
    spec = SPECS[found.format]
    module = FORMATS[found.format]
    time_unit = params.pop("time_unit", None)
    if time_unit is not None:
        if spec.time_unit == "wallclock":
            raise TraceError(f"{path}: time_unit={time_unit!r} does not apply: {spec.description} has wall-clock times")
        time_divisor(time_unit, f"{path}")
    unit = str(time_unit) if time_unit is not None else spec.time_unit
    parse_params: dict[str, object] = {}
    if spec.container == "jsonl":
        bs = params.pop("block_size", spec.block_size)
        if not is_integer(bs) or bs < 1:
            raise TraceError(f"{path}: block_size must be an integer >= 1, got {bs!r}")
        parse_params["block_size"] = int(bs)
        parse_params["time_unit_given"] = time_unit is not None
    digest = cache.file_sha256(path)
    entry = cache.entry_path(digest, found.format, parse_params)
    parsed = cache.load(entry)
    if parsed is None:
        if spec.container == "jsonl":
            parsed = module.read(path, **parse_params)  # type: ignore[arg-type]
        else:
            parsed = module.read(path, list(found.header))
        cache.store(entry, parsed)
    notes = list(parsed["notes"])  # type: ignore[arg-type]
    if found.format == burstgpt.FORMAT:
        arrays, extra = burstgpt.finish(path, parsed, params)  # type: ignore[arg-type]
        notes += extra
    else:
        if params:
            raise TraceError(f"{path}: {module.DESCRIPTION} takes no parameters {sorted(params)}")
        keys = ("arrival_s", "time_raw", "prompt_tokens", "output_tokens", "failed", "block_ids", "block_offsets",
                "block_size", "tenant", "parent", "turn")
        arrays = {k: parsed[k] for k in keys if parsed.get(k) is not None}
    raw = arrays.pop("time_raw") if "time_raw" in arrays else arrays["arrival_s"]
    t = np.asarray(raw, dtype=np.float64)
    if spec.time_unit != "wallclock":
        t = t / TIME_UNITS[unit]
        if unit != spec.time_unit:
            notes.append(f"time_unit={unit!r} (the format's own is {spec.time_unit!r})")
    if t.size and t[0] != 0.0:
        notes.append(f"arrival times measured from the first arrival (file time {float(raw[0]):.10g} "
                     f"{'s' if spec.time_unit == 'wallclock' else unit} = 0 s)")
        t = t - t[0]
    arrays["arrival_s"] = t
    meta = TraceMeta(
        name=path.name,
        source=f"{module.DESCRIPTION}: {path} (sha256 {digest[:16]})",
        licence=module.LICENCE,
        transforms=tuple(notes),
    )
    try:
        return Trace(meta=meta, **arrays)  # type: ignore[arg-type]
    except TraceError as e:
        raise TraceError(f"{path}: {e}") from None
