"""The built-in trace names ``load_trace`` resolves, each to its generator.

``default`` is the embedded default (``azure_conv``). The generators: ``traces.synthetic``
(``azure_conv``, ``azure_code``, ``bursty``) and ``traces.sessions`` (``mooncake_conv``).
"""

from __future__ import annotations

from collections.abc import Callable

from traces.sessions import mooncake_conv
from traces.synthetic import azure_code, azure_conv, bursty
from traces.trace import Trace

__all__ = ["BUILTIN_TRACES"]

BUILTIN_TRACES: dict[str, Callable[..., Trace]] = {
    "default": azure_conv,
    "azure_conv": azure_conv,
    "azure_code": azure_code,
    "mooncake_conv": mooncake_conv,
    "bursty": bursty,
}
