"""``--env-kwargs KEY=VALUE ...`` read against an environment's config dataclass.

Apart from ``agents.cli`` (which re-exports every name here) so that modules ``agents.cli``'s own
imports reach, ``agents.obs_version`` among them, can parse the same way without an import cycle.
"""

from __future__ import annotations

import ast
import math
import types
import typing
from typing import Any

from envs import options


class UsageError(ValueError):
    """A bad command-line argument; ``str(err)`` is the one-line message naming it."""


# --- --env-kwargs against the config dataclass ---------------------------------------------------

def _literal(raw: str) -> tuple[bool, Any]:
    low = raw.strip().lower()
    if low in ("true", "false"):
        return True, low == "true"
    if low in ("none", "null"):
        return True, None
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None
    return True, value


def conform(value: Any, annotation: Any) -> tuple[bool, Any]:
    """``(True, converted)`` when ``value`` is an instance of ``annotation`` (``int`` widens to
    ``float``, a list or dict to a tuple), else ``(False, None)``. Never rounds or clamps."""
    if annotation is Any:
        return True, value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            ok, v = conform(value, a)
            if ok:
                return True, v
        return False, None
    if annotation is type(None):
        return (value is None), None
    if annotation is bool:
        return (isinstance(value, bool)), value
    if annotation is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if annotation is float:  # a finite number: 'inf' and 'nan' are not literals, nor is 1e400 (read as inf)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
        return ok, (float(value) if ok else None)
    if annotation is str:
        return isinstance(value, str), value
    if origin is tuple:
        if isinstance(value, dict):
            value = tuple(value.items())
        if not isinstance(value, (tuple, list)):
            return False, None
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(items)
        elif len(args) == len(items):
            kinds = list(args)
        else:
            return False, None
        out = []
        for item, kind in zip(items, kinds):
            ok, v = conform(item, kind)
            if not ok:
                return False, None
            out.append(v)
        return True, tuple(out)
    if isinstance(annotation, type):
        return isinstance(value, annotation), value
    return True, value


def _finite(number: int | float) -> bool:
    """Whether ``number`` is a finite float (an int too large for a float is not)."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def has_infinite(value: Any) -> bool:
    """Whether ``value`` (a literal: numbers, or containers of them, any depth) holds a number that is not a
    finite float, as ``1e400`` and a 400-digit integer are (``ast.literal_eval`` reads the first as inf)."""
    if isinstance(value, (tuple, list, set)):
        return any(has_infinite(v) for v in value)
    if isinstance(value, dict):
        return any(has_infinite(v) for v in value.values())
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not _finite(value)


def parse_value(raw: str, annotation: Any) -> tuple[bool, Any]:
    """``raw`` (the text after ``=``) as a value of ``annotation``: a Python literal if it parses
    as one that fits, else the text itself where ``str`` fits."""
    ok, value = _literal(raw)
    if ok:
        fits, conv = conform(value, annotation)
        if fits:
            return True, conv
        if isinstance(value, (tuple, list, dict, set)):
            return False, None  # a container that does not fit is a mistake, not a text value
    elif raw.strip()[:1] in ("(", "[", "{") and _admits_tuple(annotation):
        return False, None  # meant as a literal (the field takes tuples) but does not parse as one
    return conform(raw, annotation)


def _admits_tuple(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_admits_tuple(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) is tuple


def _literal_problem(raw: str) -> str:
    """Why ``raw`` is not the Python literal it looks like (empty when it is one or does not look like one),
    or a number beyond a float's range."""
    ok, value = _literal(raw)
    if ok and has_infinite(value):
        return " (a number beyond a float's range: numbers must be finite)"
    if raw.strip()[:1] not in ("(", "[", "{"):
        return ""
    try:
        ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        return f" (not a Python literal: {type(e).__name__}: {getattr(e, 'msg', None) or e})"
    return ""


def parse_env_kwargs(items: list[str] | None, env_id: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as the keyword arguments of ``env_id``'s config dataclass.

    Raises ``UsageError`` naming the item: no ``=``, a key the config does not have (listing the
    valid keys), a key given twice, or a value that does not fit the field's annotation (naming
    the expected type).
    """
    fields = {f.name: f for f in options.config_fields(env_id)}
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--env-kwargs {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in fields:
            valid = ", ".join(fields)
            raise UsageError(f"--env-kwargs {item!r}: {env_id} has no key {key!r}; valid keys: {valid}")
        if key in out:
            raise UsageError(f"--env-kwargs {item!r}: {key} given twice")
        ok, value = parse_value(raw, fields[key].annotation)
        if not ok:
            raise UsageError(f"--env-kwargs {item!r}: {key} must be {fields[key].type_text}, "
                             f"got {raw!r}{_literal_problem(raw)}")
        out[key] = value
    return out


def env_kwargs_args(kwargs: dict[str, Any]) -> list[str]:
    """``KEY=VALUE`` strings that ``parse_env_kwargs`` reads back as ``kwargs``."""
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in kwargs.items()]
