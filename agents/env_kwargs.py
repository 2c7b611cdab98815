"""``--env-kwargs KEY=VALUE ...`` read against an environment's config dataclass.

Apart from ``agents.cli`` (which re-exports every name here) so that modules ``agents.cli``'s own
imports reach, ``agents.obs_version`` among them, can parse the same way without an import cycle.
"""

from __future__ import annotations

import ast
import types
import typing
from typing import Any

from envs import options
from envs.config_check import check_load_field, conform, has_infinite  # noqa: F401  (has_infinite re-exported)


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
    elif _admits_tuple(annotation) and ("," in raw or raw.strip()[:1] in ("(", "[")):
        words = _bare_words(raw)  # H100,L40S or (H100, L40S): a tuple of unquoted strings
        if words is not None:
            fits, conv = conform(words, annotation)
            if fits:
                return True, conv
        if raw.strip()[:1] in ("(", "[", "{"):
            return False, None  # meant as a literal (the field takes tuples) but does not parse as one
    return conform(raw, annotation)


def _bare_words(raw: str) -> tuple[str, ...] | None:
    """``a,b`` / ``(a, b)`` / ``[a, b]`` as ``("a", "b")``; None when a word is empty or quoted."""
    text = raw.strip()
    if text[:1] + text[-1:] in ("()", "[]"):
        text = text[1:-1]
    words = [w.strip() for w in text.split(",")]
    if words and words[-1] == "" and len(words) > 1:
        words.pop()  # a one-tuple's trailing comma: H100,
    if not words or any(not w or w[0] in "'\"([{" for w in words):
        return None
    return tuple(words)


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
    the expected type; a load knob's value in the environments' own wording, ``envs.config_check.check_load_field``).
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
        try:  # a load knob: the environments' one check and wording, whatever the value
            given = _literal(raw)  # as typed (the conformed value widens ints: 0 read 0.0)
            check_load_field(key, given[1] if given[0] else raw,
                             fields[key].annotation, f"--env-kwargs {item!r}: {key}")
        except ValueError as e:
            raise UsageError(f"{e}{_literal_problem(raw)}") from None
        if not ok:
            raise UsageError(f"--env-kwargs {item!r}: {key} must be {fields[key].type_text}, "
                             f"got {raw!r}{_literal_problem(raw)}")
        out[key] = value
    return out


def env_kwargs_args(kwargs: dict[str, Any]) -> list[str]:
    """``KEY=VALUE`` strings that ``parse_env_kwargs`` reads back as ``kwargs``."""
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in kwargs.items()]
