"""The built-in trace names ``load_trace`` resolves, each to its generator, with versions.

``default`` is the embedded default (``azure_conv``). The generators: ``traces.synthetic``
(``azure_conv``, ``azure_code``, ``bursty``), ``traces.sessions`` (``mooncake_conv``) and
``traces.families`` (``azure_code_bursty``, ``burstgpt_like``, ``agentic``).

Every generator has a version (``TRACE_VERSIONS``). A change that alters what a generator yields
for the same seed and parameters (its parameters in ``traces/data``, its draws or their order)
bumps that version. ``load_trace`` accepts the plain name (the current version) and the
versioned name ``NAME-vN`` of the current version; an older version's name raises a
``TraceError`` saying which version is current, so a result recorded under ``bursty-v1`` can
never silently be reproduced with another generator. ``versioned_name`` is what results record
(zoo checkpoints, evaluation JSON).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from traces.errors import TraceError
from traces.families import agentic, azure_code_bursty, burstgpt_like
from traces.sessions import mooncake_conv
from traces.synthetic import azure_code, azure_conv, bursty
from traces.trace import Trace

__all__ = ["BUILTIN_TRACES", "TRACE_VERSIONS", "resolve_builtin", "versioned_name"]

# Generator name -> (current version, generator).
_GENERATORS: dict[str, tuple[int, Callable[..., Trace]]] = {
    "azure_conv": (1, azure_conv),
    "azure_code": (1, azure_code),
    "mooncake_conv": (1, mooncake_conv),
    "bursty": (1, bursty),
    "azure_code_bursty": (1, azure_code_bursty),
    "burstgpt_like": (1, burstgpt_like),
    "agentic": (1, agentic),
}
_ALIASES = {"default": "azure_conv"}

TRACE_VERSIONS: dict[str, int] = {name: v for name, (v, _) in _GENERATORS.items()}
BUILTIN_TRACES: dict[str, Callable[..., Trace]] = {
    **{alias: _GENERATORS[target][1] for alias, target in _ALIASES.items()},
    **{name: gen for name, (_, gen) in _GENERATORS.items()},
    **{f"{name}-v{v}": gen for name, (v, gen) in _GENERATORS.items()},
}
_VERSIONED = re.compile(r"^(?P<name>[a-z_]+)-v(?P<version>\d+)$")


def resolve_builtin(name: str) -> Callable[..., Trace] | None:
    """The generator of built-in trace ``name`` (plain, alias or current ``NAME-vN``); None when
    ``name`` is no built-in name; ``TraceError`` for a built-in name at another version."""
    if name in BUILTIN_TRACES:
        return BUILTIN_TRACES[name]
    m = _VERSIONED.match(name)
    if m and m["name"] in TRACE_VERSIONS:
        raise TraceError(f"built-in trace {name!r}: version {m['version']} is not available; "
                         f"{m['name']} is at version {TRACE_VERSIONS[m['name']]} ({m['name']}-v{TRACE_VERSIONS[m['name']]})")
    return None


def versioned_name(name: str) -> str:
    """``NAME-vN`` of a built-in trace name (``default`` -> ``azure_conv-v1``); a name that is not
    built in (a file path) is returned unchanged."""
    base = _ALIASES.get(name, name)
    m = _VERSIONED.match(base)
    if m and m["name"] in TRACE_VERSIONS:
        return base
    return f"{base}-v{TRACE_VERSIONS[base]}" if base in TRACE_VERSIONS else name
