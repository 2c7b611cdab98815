"""load_trace: one entry point for built-in generators and trace files of any supported format."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from traces import cache
from traces.errors import TraceError
from traces.readers import FORMATS, burstgpt, mooncake, sniff
from traces.trace import Trace, TraceMeta

__all__ = ["load_trace", "load_file"]


def load_trace(name_or_path: str | Path, *, seed: int = 0, **params: object) -> Trace:
    """A built-in trace by name (generator; `params` forwarded) or a trace file by path.

    File formats are recognised by content, so a file's name or extension does not matter.
    `seed` only affects generators; files are read exactly as they are.
    """
    from traces.builtin import BUILTIN_TRACES

    if isinstance(name_or_path, str) and name_or_path in BUILTIN_TRACES:
        gen = BUILTIN_TRACES[name_or_path]
        sig = inspect.signature(gen)
        try:
            sig.bind(seed=seed, **params)
        except TypeError as e:
            raise TraceError(
                f"built-in trace {name_or_path!r}: {e}; accepted parameters: {', '.join(sig.parameters)}"
            ) from None
        return gen(seed=seed, **params)
    path = Path(name_or_path)
    if not path.exists():
        raise TraceError(
            f"unknown trace {str(name_or_path)!r}: not a built-in name (known: {', '.join(sorted(BUILTIN_TRACES))}) "
            f"and no file at {path.resolve()}"
        )
    if not path.is_file():
        raise TraceError(f"{path}: is a directory, expected a trace file")
    return load_file(path, **params)


def load_file(path: Path, **params: object) -> Trace:
    """Parse (or fetch from the cache) a trace file and apply format parameters."""
    found = sniff(path)
    module = FORMATS[found.format]
    parse_params: dict[str, object] = {}
    if found.format == mooncake.FORMAT:
        bs = params.pop("block_size", mooncake.BLOCK_SIZE)
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise TraceError(f"{path}: block_size must be an integer >= 1, got {bs!r}")
        parse_params["block_size"] = int(bs)
    digest = cache.file_sha256(path)
    entry = cache.entry_path(digest, found.format, parse_params)
    parsed = cache.load(entry)
    if parsed is None:
        if found.format == mooncake.FORMAT:
            parsed = mooncake.read(path, **parse_params)  # type: ignore[arg-type]
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
        keys = ("arrival_s", "prompt_tokens", "output_tokens", "failed", "block_ids", "block_offsets", "block_size")
        arrays = {k: parsed[k] for k in keys if parsed.get(k) is not None}
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
