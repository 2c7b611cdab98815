"""Generator parameters from traces/data/synthetic.toml, where every number carries its source.

Each parameter is written as ``key = { value = ..., source = "..." }``; reading fails (naming the
key) if a source is missing, so an unsourced number cannot slip into a generator.
"""

from __future__ import annotations

import copy
import functools
import tomllib
from pathlib import Path
from typing import Any

from traces.errors import TraceError

DATA_FILE = Path(__file__).resolve().parent / "data" / "synthetic.toml"


def _strip(node: dict[str, Any], where: str, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in node.items():
        here = f"{where}.{key}" if where else key
        if not isinstance(val, dict):
            raise TraceError(f"{path}: {here} must be {{ value = ..., source = \"...\" }} or a table")
        if "value" in val:
            src = val.get("source")
            if not isinstance(src, str) or not src.strip():
                raise TraceError(f"{path}: {here} has no source")
            out[key] = val["value"]
        else:
            out[key] = _strip(val, here, path)
    return out


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TraceError(f"{path}: cannot read generator parameters ({e})") from None
    return _strip(raw, "", path)


def load_params(section: str, path: Path = DATA_FILE) -> dict[str, Any]:
    """The values (sources stripped) of one top-level section, as a fresh copy."""
    data = _load(path)
    if section not in data:
        raise TraceError(f"{path}: no section [{section}] (have {sorted(data)})")
    return copy.deepcopy(data[section])


def load_sources(path: Path = DATA_FILE) -> dict[str, str]:
    """Every parameter's dotted name -> its source string (for documentation and tests)."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    out: dict[str, str] = {}

    def walk(node: dict[str, Any], where: str) -> None:
        for k, v in node.items():
            here = f"{where}.{k}" if where else k
            if isinstance(v, dict) and "value" in v:
                out[here] = v.get("source", "")
            elif isinstance(v, dict):
                walk(v, here)

    walk(raw, "")
    return out
