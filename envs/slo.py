"""Latency SLOs per model and tier, read from ``envs/data/slo.toml`` (every figure carries its source).

``SLO_METRICS`` names the per-request checks an environment can count (its ``slo_metric`` field):

* ``"tpot"`` (default): TTFT <= SLO_ttft and TPOT <= SLO_tpot, TPOT = (E2E - TTFT) / (output - 1),
  exactly as MLPerf Inference LoadGen and DistServe define and check it (sources in the data file);
  a one-token output has no TPOT and is checked on TTFT alone (DistServe sets its TPOT to 0).
* ``"p99_tbt"``: TTFT <= SLO_ttft and the request's nearest-rank p99 gap between tokens <= SLO_tpot,
  a stricter smoothness check (a single long gap in a short output fails it).
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

from envs.core.state import SLO_P99_TBT, SLO_TPOT  # noqa: F401 (re-exported)

_SLO_FILE = Path(__file__).parent / "data" / "slo.toml"
SLO_METRICS = ("tpot", "p99_tbt")
# Engine.slo_metric codes (envs.core.state): SLO_TPOT = 0, SLO_P99_TBT = 1, the order of SLO_METRICS.


@cache
def _data() -> dict:
    with _SLO_FILE.open("rb") as f:
        return tomllib.load(f)


def slo_metric_code(name: str) -> int:
    """The kernels' code of an ``slo_metric`` name; ValueError naming the choices otherwise."""
    if name not in SLO_METRICS:
        raise ValueError(f"slo_metric must be one of {', '.join(SLO_METRICS)}, got {name!r}")
    return SLO_METRICS.index(name)


def default_slo(model_name: str) -> tuple[float, float]:
    """(TTFT SLO, TPOT SLO) in seconds of a catalogue model: MLPerf Inference's Server scenario.

    Raises KeyError naming the file and the known models when ``model_name`` has no row.
    """
    rows = {name.lower(): row for name, row in _data()["models"].items()}
    row = rows.get(model_name.lower())
    if row is None:
        raise KeyError(f"{_SLO_FILE}: no SLO for model {model_name!r}; known: {', '.join(sorted(rows))}")
    return float(row["ttft_s"]), float(row["tpot_s"])


def tier_slo(tier: str, model_name: str) -> tuple[float, float]:
    """(TTFT SLO, TPOT SLO) in seconds of a published tier (``mlperf_interactive``,
    ``distserve_chatbot`` ...) for a model; a tier row named ``"*"`` applies to every model.

    Raises KeyError naming the file and the known tiers or models.
    """
    tiers = _data()["tiers"]
    if tier not in tiers:
        raise KeyError(f"{_SLO_FILE}: no SLO tier {tier!r}; known: {', '.join(sorted(tiers))}")
    rows = {name.lower(): row for name, row in tiers[tier].items()}
    row = rows.get(model_name.lower(), rows.get("*"))
    if row is None:
        raise KeyError(f"{_SLO_FILE}: tier {tier!r} has no SLO for model {model_name!r}; "
                       f"known: {', '.join(sorted(rows))}")
    return float(row["ttft_s"]), float(row["tpot_s"])


def tiers() -> tuple[str, ...]:
    """Names of the published tiers in the data file."""
    return tuple(sorted(_data()["tiers"]))
