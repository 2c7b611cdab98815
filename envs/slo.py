"""Default SLOs per model, read from ``envs/data/slo.toml`` (every figure carries its source)."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

_SLO_FILE = Path(__file__).parent / "data" / "slo.toml"


@cache
def _table() -> dict[str, dict]:
    with _SLO_FILE.open("rb") as f:
        return {name.lower(): row for name, row in tomllib.load(f).items()}


def default_slo(model_name: str) -> tuple[float, float]:
    """(TTFT SLO, TBT SLO) in seconds for a catalogue model name."""
    row = _table().get(model_name.lower())
    if row is None:
        known = ", ".join(sorted(_table()))
        raise KeyError(f"{_SLO_FILE}: no SLO for model {model_name!r}; known: {known}")
    return float(row["ttft_s"]), float(row["tbt_s"])
