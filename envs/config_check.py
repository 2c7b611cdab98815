"""The one check of an environment's config against its dataclass: field names, types, finite numbers.

Every environment builds its config with :func:`make_config` (``XVecEnv(n, config=None, **fields)``,
``gymnasium.make(id, **fields)``, the PettingZoo cluster), and the command line's ``--env-kwargs``
(``agents.env_kwargs``) reads its values with the same :func:`conform`, so that the Python API and the
CLI refuse the same values with the field named: ``load=float("inf")``, ``window_requests='64'``,
``replicas=2.5``, ``prefix_caching=1``. The load knobs (``load``, ``slo_penalty``, ``rate_scale``,
``ttft_load``) get their one range check here too (:func:`check_load_field`), so a bad load reads the same
in every environment and on the command line, and the counts the kernels hold in int32 (``max_seqs``, ``budget``
...: :data:`COUNT_FIELDS`) their one upper bound; what other values must be beyond their type (``split in
{train, test, all}``, ``replicas >= 1``) each environment's own checks say.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable
from typing import Any

import numpy as np

from envs.core import mixture
from envs.options import type_text
from traces.checks import is_integer, is_real, positive_levels, positive_real


def has_infinite(value: Any) -> bool:
    """Whether ``value`` (numbers, or containers of them, any depth) holds a number that is not a finite
    float: inf, nan, ``1e400`` (``ast.literal_eval`` reads it as inf) or a 400-digit integer."""
    if isinstance(value, (tuple, list, set)):
        return any(has_infinite(v) for v in value)
    if isinstance(value, dict):
        return any(has_infinite(v) for v in value.values())
    return is_real(value) and not is_real(value, finite=True)


def conform(value: Any, annotation: Any) -> tuple[bool, Any]:
    """``(True, converted)`` when ``value`` is an instance of ``annotation``, else ``(False, None)``.

    ``int`` widens to ``float``, numpy scalars count as the Python type they hold, a list or dict
    (its items) is a tuple; a ``float`` must be finite (inf, nan and ``1e400`` are not). Never rounds
    or clamps: ``2.0`` is not an ``int``, ``1`` not a ``bool``, ``'64'`` not a number.
    """
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
        ok = isinstance(value, (bool, np.bool_))
        return ok, (bool(value) if ok else None)
    if annotation is int:
        ok = is_integer(value)
        return ok, (int(value) if ok else None)
    if annotation is float:
        ok = is_real(value, finite=True)
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


# The load knobs, one meaning and one check in every environment that has them, so that a bad value reads the
# same whatever it is ('x', nan, -1, ()): a level or tuple of levels (traces.checks.positive_levels) or one
# number (positive_real; None too where the annotation takes it).
LEVEL_FIELDS = ("load", "slo_penalty")
POSITIVE_FIELDS = ("rate_scale", "ttft_load")


def check_load_field(name: str, value: Any, annotation: Any, what: str) -> bool:
    """Whether ``name`` is a load knob (``LEVEL_FIELDS``, ``POSITIVE_FIELDS``); if so, ``ValueError("WHAT must
    be a finite number > 0 ..., got VALUE")`` (the shared wording of ``traces.checks``) unless ``value`` is one.
    ``what`` names the field and where it is given (``"Routing: load"``, ``"--env-kwargs 'load=x': load"``)."""
    if name in LEVEL_FIELDS:
        positive_levels(value, what)
    elif name in POSITIVE_FIELDS:
        positive_real(value, what, none_ok=conform(None, annotation)[0])
    else:
        return False
    return True


def check_types(cfg: Any, where: str) -> None:
    """Raise if a field of the config dataclass ``cfg`` (nested config dataclasses included, e.g.
    ``MultiConfig.routing``) is not of its annotated type.

    A load knob gets its one check (:func:`check_load_field`, ``ValueError``). Otherwise raises
    ``ValueError("WHERE: FIELD must be finite (TYPE), got inf")`` for a number that is not a
    finite float (anywhere in the value) and ``TypeError("WHERE: FIELD must be TYPE, got VALUE (KIND)")``
    for any other mismatch. The value is left as given (no conversion).
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, annotation = getattr(cfg, f.name), hints[f.name]
        if dataclasses.is_dataclass(annotation) and dataclasses.is_dataclass(value):
            check_types(value, where)
            continue
        if check_load_field(f.name, value, annotation, f"{where}: {f.name}"):
            continue
        ok, _ = conform(value, annotation)
        if ok:
            continue
        if has_infinite(value):
            raise ValueError(f"{where}: {f.name} must be finite ({type_text(annotation)}), got {value!r}")
        raise TypeError(f"{where}: {f.name} must be {type_text(annotation)}, got {value!r} "
                        f"({type(value).__name__})")


def make_config(cls: type, config: Any, fields: dict[str, Any], where: str) -> Any:
    """``config`` (default ``cls()``) with ``fields`` replaced, its types checked (:func:`check_types`).

    Raises ``TypeError("WHERE: unknown config field(s) [...]; known: ...")`` for a name ``cls`` does
    not have, and what :func:`check_types` raises.
    """
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise TypeError(f"{where}: unknown config field(s) {unknown}; known: {', '.join(known)}")
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"{where}: config must be a {cls.__name__}, got {type(config).__name__}")
    cfg = dataclasses.replace(config if config is not None else cls(), **fields)
    check_types(cfg, where)
    check_episode_fields(cfg, where)
    check_count_fields(cfg, where)
    return cfg


# The fields every environment's config has (envs/__init__.py) and the values each takes.
SPLITS = ("train", "test", "all")  # the trace's training part, its held-out part, or the whole trace
WINDOW_ORDERS = ("random", "sequential")  # episodes drawn at random, or env i of a batch plays window i


def _choices(values: tuple[str, ...]) -> str:
    quoted = [repr(v) for v in values]
    return " or ".join(quoted) if len(quoted) == 2 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def check_episode_fields(cfg: Any, where: str) -> None:
    """``ValueError("WHERE: split must be 'train', 'test' or 'all', got ...")`` (likewise ``window_order``)
    for a config (nested ones included) whose ``split`` or ``window_order`` is not one of its values, and
    ``ValueError("WHERE: trace_seed must be an integer >= 0, got -1")`` for a negative ``trace_seed`` (the
    generators' and the predictor noise's seed: it was the trace loader's 'seed must be ...', blamed on
    the trace)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_episode_fields(value, where)
        elif f.name == "trace_seed" and is_integer(value) and value < 0:
            raise ValueError(f"{where}: trace_seed must be an integer >= 0, got {value!r}")
        elif f.name in ("split", "window_order"):
            allowed = SPLITS if f.name == "split" else WINDOW_ORDERS
            if value not in allowed:
                raise ValueError(f"{where}: {f.name} must be {_choices(allowed)}, got {value!r}")


# The largest count a size field takes (num_envs, replicas, slots, candidates, GPUs, layers, intervals, days ...):
# the kernels index envs, replicas, slots and requests with int32, so 2**31 - 1.
MAX_COUNT = 2**31 - 1


def memory_limit_bytes() -> int:
    """This machine's physical memory in bytes (``os.sysconf``): the most the arrays a config sizes may take
    (:func:`check_sizes`). A config over it cannot run here: numpy's ``MemoryError`` (or the kernel's OOM killer)
    was the error, naming no field."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n: int) -> str:
    """Bytes in GiB, three significant digits (``1.6e+04 GiB`` for a huge one)."""
    return f"{n / 2**30:.3g} GiB"


def check_count(where: str, name: str, value: int, why: str = "the kernels index it with int32") -> None:
    """``ValueError("WHERE: NAME must be at most 2,147,483,647 (2**31 - 1: WHY), got V")`` for an integer size
    over :data:`MAX_COUNT`; ``why`` says what holds it in int32 (default: the kernels index it with int32)."""
    if value > MAX_COUNT:
        raise ValueError(f"{where}: {name} must be at most {MAX_COUNT:,} (2**31 - 1: {why}), got {value!r}")


# Integer fields bounded by MAX_COUNT wherever a config has them (check_count_fields, from make_config), each with
# what the kernels hold in int32: a larger value cannot be told from 2**31 - 1 there, and one past int64 (10**30)
# was numba's "Int value is too large" naming an argument number at the first step, or numpy's OverflowError
# (gpus_per_node). What is refused below (>= 1, tp dividing gpus_per_node) each environment's own checks say.
COUNT_FIELDS = {
    "max_seqs": "a replica's running requests are counted in int32",  # vLLM max_num_seqs
    "budget": "an iteration's prefill tokens are counted in int32",  # chunked-prefill token budget
    "hash_blocks": "a prefix chain's blocks are indexed with int32",  # Routing's prefix_key
    "dispatch_queue": "an instance's queued requests are counted in int32",  # Disaggregation
    "gpus_per_node": "GPUs are counted in int32, as gpus and instances are",  # Disaggregation, ExpertPlacement
}


def check_count_fields(cfg: Any, where: str) -> None:
    """:func:`check_count`'s ``ValueError`` naming the field and why for an integer field of :data:`COUNT_FIELDS`
    over :data:`MAX_COUNT` in the config dataclass ``cfg`` (nested configs included, e.g. ``MultiConfig.routing``);
    other types are :func:`check_types`' to refuse."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_count_fields(value, where)
        elif f.name in COUNT_FIELDS and is_integer(value):
            check_count(where, f.name, value, COUNT_FIELDS[f.name])


def check_sizes(where: str, sizes: dict[str, int], nbytes: Callable[..., int], what: str,
                minimums: dict[str, int] | None = None) -> None:
    """Refuse integer sizes (``{"num_envs": 4, "replicas": 8, ...}``, each already an integer at least its minimum)
    that the environment cannot hold, before anything is built or allocated:

    - :func:`check_count`'s ``ValueError`` for one over :data:`MAX_COUNT`, the first such in ``sizes``' order;
    - ``ValueError("WHERE: WHAT for NAME=V, ... take N GiB, more than this machine's memory (M GiB): ...")``
      when ``nbytes(**sizes)`` (bytes, a lower bound on what the arrays ``what`` names take: an estimate under
      it never refuses a config that runs) passes :func:`memory_limit_bytes`, with the largest value of each
      size that fits with the others as given (bisection: ``nbytes`` must not decrease as any size grows) where
      one at least the size's minimum does: ``..., take 219 GiB, more than this machine's memory (23.5 GiB):
      replicas at most 1,802,597 or queue_slots at most 24 would fit with the others as given``; where none
      does, that no one of them lowered alone fits or, when every size at its minimum is still too large,
      ``this machine cannot hold even the smallest sizes (NAME=MIN, ...: N GiB)``.

    ``minimums``: the least value each size takes (the environment's own check; 1 for a size not named), so
    that the error never suggests a value the field refuses (``instances at most 1`` where instances >= 2).
    """
    for name, v in sizes.items():
        check_count(where, name, v)
    sizes = {name: int(v) for name, v in sizes.items()}
    least = {name: int((minimums or {}).get(name, 1)) for name in sizes}
    need, limit = nbytes(**sizes), memory_limit_bytes()
    if need <= limit:
        return
    fits = []
    for name, v in sizes.items():
        lo, hi = least[name] - 1, v  # the largest m in [least, v] whose arrays fit with the others (least - 1: none)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if nbytes(**{**sizes, name: mid}) <= limit else (lo, mid - 1)
        if lo >= least[name]:
            fits.append(f"{name} at most {lo:,}")
    given = ", ".join(f"{name}={v}" for name, v in sizes.items())
    if fits:
        fix = f"{' or '.join(fits)} would fit with the others as given"
    elif nbytes(**least) > limit:
        smallest = ", ".join(f"{name}={v}" for name, v in least.items())
        fix = f"this machine cannot hold even the smallest sizes ({smallest}: {_gib(nbytes(**least))})"
    else:
        fix = "no one of them lowered alone fits"
    raise ValueError(f"{where}: {what} for {given} take {_gib(need)}, more than this machine's memory "
                     f"({_gib(limit)}): {fix}")


def check_mixture(cfg: Any, where: str) -> None:
    """A workload mixture's fields (``envs.core.mixture.check_mixture_config``) and a ``workload_seeds`` the
    mixture can hold (:func:`check_workload_seeds`), before any part is loaded; ``ValueError`` naming the field."""
    mixture.check_mixture_config(cfg, where)
    check_workload_seeds(cfg, where)


def check_workload_seeds(cfg: Any, where: str) -> None:
    """``workload_seeds`` (already an integer >= 1) that the mixture can hold, before any part is loaded: each
    built-in entry of ``cfg.workloads`` contributes that many parts, each at least one window of
    ``cfg.window_requests`` requests (``mixture.TRACE_REQUEST_BYTES`` each) held at once. ``ValueError`` naming
    workload_seeds for more than 2**31 - 1 (windows are indexed with int32) or more parts than this machine's
    memory holds, with the most that fits (:func:`check_sizes`; 2**40 hung building a list of
    2**40 parts). Without a built-in entry the field makes no part: any value but 1 is refused there (it would
    be ignored)."""
    builtin = sum(mixture.is_builtin(mixture.entry_name(x)) for x in cfg.workloads)
    if not builtin:
        if cfg.workload_seeds != 1:
            what = f"workloads={cfg.workloads!r} has no built-in generator entry" if cfg.workloads else \
                "there is no workloads mixture (workloads=())"
            raise ValueError(f"{where}: workload_seeds={cfg.workload_seeds} sets how many generator seeds each built-in "
                             f"workloads entry plays, and {what}: leave it at 1")
        return
    check_count(where, "workload_seeds", cfg.workload_seeds, "a mixture's windows, one a part at least, are indexed "
                "with int32")
    per_part = mixture.TRACE_REQUEST_BYTES * int(cfg.window_requests)
    check_sizes(where, {"workload_seeds": int(cfg.workload_seeds)},
                lambda workload_seeds: builtin * workload_seeds * per_part,
                f"the {builtin} built-in workloads entr{'y' if builtin == 1 else 'ies'}' parts (one window of "
                f"window_requests={cfg.window_requests} requests each, at least)")
