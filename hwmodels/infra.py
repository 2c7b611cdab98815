"""Infrastructure defaults outside the GPU (data/infra.toml): NIC, weight storage, engine start."""

from __future__ import annotations

import functools

from ._data import read_toml, sourced
from .errors import HwModelError

INFRA_FILE = "infra.toml"


@functools.cache
def infra_default(section: str, key: str) -> float:
    """A sourced default such as infra_default('network', 'inter_node_bw')."""
    table = read_toml(INFRA_FILE).get(section)
    if not isinstance(table, dict):
        raise HwModelError(f"{INFRA_FILE}: missing [{section}] table")
    return float(sourced(table, key, f"{INFRA_FILE} [{section}]", float, minimum=0.0).value)

