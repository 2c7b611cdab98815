"""Readable units for the tables people read (evaluate, leaderboard Markdown and HTML).

Results and JSON keep SI base units (seconds, bytes, dollars, requests/s) under keys that end in
the unit (``ttft_p99_s``, ``migration_bytes``, ``cost_usd``, ``goodput_rps``). A table column shows
the quantity with the unit in its header instead: ``ttft_p99 (ms)``, ``moe_layer_time (us)``,
``migration (GB)``, ``cost ($)``, ``goodput (req/s)``. Times take one unit per column (the
largest of s, ms, us in which the column's largest value is at least 10), so a column reads
without exponents; bytes are decimal GB (1e9 bytes), as GPU and network datasheets count them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
# Keys whose trailing "_s" means "per second", not seconds: key -> (shown name, unit).
RATES = {"throughput_tok_s": ("throughput", "tok/s"), "goodput_tok_s": ("goodput", "tok/s"),
         "tokens_per_gpu_s": ("tokens_per_gpu", "tok/s")}


@dataclass(frozen=True)
class Column:
    """How one metric key is shown: ``header`` (name and unit) and ``scale`` (multiplies the
    SI value)."""

    header: str
    scale: float


def _time_unit(values: Iterable[float | None]) -> tuple[str, float]:
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    top = max(finite, default=1.0)
    for unit, size in TIME_UNITS:
        if top >= 10 * size:
            return unit, size
    return TIME_UNITS[-1]


def column(key: str, values: Iterable[float | None] = ()) -> Column:
    """The display of metric ``key`` for a column holding ``values`` (SI units)."""
    if key in RATES:
        name, unit = RATES[key]
        return Column(f"{name} ({unit})", 1.0)
    if key.endswith("_per_s"):
        return Column(f"{key[:-6]} (/s)", 1.0)
    if key.endswith("_rps"):
        return Column(f"{key[:-4]} (req/s)", 1.0)
    if key.endswith("_usd"):
        return Column(f"{key[:-4]} ($)", 1.0)
    if key.endswith("_bytes") or "_bytes_" in key:  # kv_bytes_transferred (Disaggregation-v0) was shown in bytes
        return Column(f"{key[:-6] if key.endswith('_bytes') else key.replace('_bytes_', '_', 1)} (GB)", 1e-9)
    if key.endswith("_s") or "_s_" in key:
        unit, size = _time_unit(values)
        name = key[:-2] if key.endswith("_s") else key.replace("_s_", "_", 1)
        return Column(f"{name} ({unit})", 1.0 / size)
    if key == "gpu_hours":
        return Column("gpu (GPU-h)", 1.0)
    return Column(key, 1.0)


def fmt(x: float | None) -> str:
    """A table cell: four significant digits below 1000, thousands separators above; ``–`` for
    missing or non-finite values."""
    if x is None or not math.isfinite(x):
        return "–"
    if abs(x) < 1e-9:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def cell(key: str, value: float | None, col: Column | None = None) -> str:
    """``value`` of ``key`` in the column's unit."""
    col = col or column(key, [value])
    return fmt(None if value is None else value * col.scale)
