"""Infrastructure defaults outside the GPU (data/infra.toml): NIC, weight storage, engine start."""

from __future__ import annotations

import functools

from ._data import read_toml, sourced
from .errors import HwModelError
from traces.checks import is_real

INFRA_FILE = "infra.toml"


@functools.cache
def infra_default(section: str, key: str) -> float:
    """A sourced default such as infra_default('network', 'inter_node_bw')."""
    table = read_toml(INFRA_FILE).get(section)
    if not isinstance(table, dict):
        raise HwModelError(f"{INFRA_FILE}: missing [{section}] table")
    return float(sourced(table, key, f"{INFRA_FILE} [{section}]", float, minimum=0.0).value)


def positive(value: object, what: str) -> float:
    """Validate a positive finite scalar argument (bandwidths, times) with a named error."""
    if not is_real(value) or not (0 < value < float("inf")):
        raise HwModelError(f"{what} must be a positive finite number, got {value!r}")
    return float(value)
