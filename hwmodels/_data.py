"""Loading the TOML data files, with every number required to carry its source.

Kept separate so that every catalogue (GPUs, models, vLLM memory profile, infrastructure,
calibration priors) enforces the same rule: a field is an inline table {value, source}, and a
missing or malformed field is reported with file, table and field name.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HwModelError
from traces.checks import is_real

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Sourced:
    """A number together with where it came from."""

    value: float | int | bool
    source: str


def read_toml(name: str | Path) -> dict[str, Any]:
    """Parse a data file (a bare name is looked up in hwmodels/data)."""
    path = Path(name) if Path(name).is_absolute() else DATA_DIR / name
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise HwModelError(f"data file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise HwModelError(f"{path}: invalid TOML: {exc}") from exc


def sourced(table: dict[str, Any], key: str, where: str, kind: type = float,
            minimum: float | None = None) -> Sourced:
    """Return table[key] as Sourced, checking type, finiteness, lower bound and source text.

    `where` names the file and table for the error message, e.g. "gpus.toml [H100-SXM]".
    """
    if key not in table:
        raise HwModelError(f"{where}: missing field '{key}' (expected {{ value = ..., source = \"...\" }})")
    entry = table[key]
    if not isinstance(entry, dict) or "value" not in entry:
        raise HwModelError(f"{where}: field '{key}' must be an inline table {{ value = ..., source = \"...\" }}, got {entry!r}")
    src = entry.get("source")
    if not isinstance(src, str) or not src.strip():
        raise HwModelError(f"{where}: field '{key}' has no source text")
    raw = entry["value"]
    if kind is bool:
        if not isinstance(raw, bool):
            raise HwModelError(f"{where}: field '{key}' must be true/false, got {raw!r}")
        return Sourced(raw, src)
    if not is_real(raw):
        raise HwModelError(f"{where}: field '{key}' must be a number, got {raw!r}")
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise HwModelError(f"{where}: field '{key}' must be an integer, got {raw!r}")
        value: float | int = int(raw)
    else:
        value = float(raw)
        if not math.isfinite(value):
            raise HwModelError(f"{where}: field '{key}' must be finite, got {raw!r}")
    if minimum is not None and value < minimum:
        raise HwModelError(f"{where}: field '{key}' must be >= {minimum}, got {value!r}")
    return Sourced(value, src)
