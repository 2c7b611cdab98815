"""The one test of "is this argument a number" that every layer's argument checks share.

``traces`` is the lowest layer (hwmodels, envs and agents may all import it), so the predicate lives here:
a real number is a Python or numpy int or float and not a bool (``True`` is no count of seconds, and
``isinstance(True, int)`` holds). The range each argument must lie in, and the error class and wording
that name it, stay with the argument's own check; the most common one, a finite number > 0, is
:func:`positive_real` (the error class stays the caller's: ``TraceError``, ``HwModelError``, ``ValueError``).
"""

from __future__ import annotations

import math

import numpy as np


def is_real(value: object, finite: bool = False) -> bool:
    """Whether ``value`` is a real number (int or float, Python or numpy, not a bool); with ``finite``,
    also a finite float (not inf, nan, nor an int too large for a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    if not finite:
        return True
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool and not a float such as ``2.0``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_real(value: object, what: str, error: type[Exception] = ValueError, none_ok: bool = False) -> float | None:
    """``float(value)`` when ``value`` is a finite real number > 0 (:func:`is_real`, so never a bool); None for
    None where ``none_ok``; else ``error("WHAT must be [None or ]a finite number > 0, got VALUE")``, one line,
    ``what`` naming the argument and where it is given (``"imitate: learning_rate"``,
    ``"cold_start_time: storage_bw (bytes/s)"``)."""
    if none_ok and value is None:
        return None
    if not is_real(value, finite=True) or not value > 0:
        raise error(f"{what} must be {'None or ' if none_ok else ''}a finite number > 0, got {value!r}")
    return float(value)


def positive_levels(value: object, what: str, error: type[Exception] = ValueError) -> tuple[float, ...]:
    """A config's levels (loads, SLO penalties): ``value``, one number or a sequence of numbers, as a
    non-empty tuple of floats, each a finite real number > 0 (:func:`positive_real`); else
    ``error("WHAT must be a finite number > 0 or a non-empty tuple of them, got VALUE")``, one line."""
    vals = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else (value,)
    if not vals or not all(is_real(v, finite=True) and v > 0 for v in vals):
        raise error(f"{what} must be a finite number > 0 or a non-empty tuple of them, got {value!r}")
    return tuple(float(v) for v in vals)
