"""Training on a distribution of workloads: the parts a config's ``workloads`` list names.

A config with ``workloads = ("azure_conv-v1", "../shared/traces/azure_llm_2023_conv.csv", ...)``
plays episodes from several workload families instead of one trace. Each entry is a built-in
trace name (plain or ``NAME-vN``) or a trace file path, or a pair ``(NAME_OR_PATH, trace_params)``
that gives that entry its own ``traces.load_trace`` parameters, as a single-trace config's
``trace_params`` does (``("burstgpt_like-v1", {"duration_s": 14400.0})``: four hours of the
generator, as ``agents.scenarios`` plays it); a built-in generator contributes
``workload_seeds`` parts (generator seeds ``trace_seed``, ``trace_seed + 1``, ...), a file one
part. The config's ``split`` and ``held_out_frac`` apply to every part separately, so training
(``split="train"``) sees the first part of every family and never a held-out window.

Each episode draws its part uniformly (every family and seed equally often, whatever its
length), then a window of that part, then the swept knob (``envs.native_vec.draw_episode`` with
``groups``); the episode's info records the part (``workload``: name, generator seed, window).
Loads are relative to each part's own measured capacity, so ``load=1.3`` means the same overload
on a code trace as on a conversation trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import traces
from envs.core import state as S
from envs.core.workload import TooFewRequests, load_split
from traces.builtin import resolve_builtin, versioned_name
from traces.trace import Trace
from traces.checks import is_integer

__all__ = ["Part", "Mixture", "WorkloadEntry", "build_mixture", "normalize_workloads", "parts_of", "load_parts",
           "dense_offset_chains", "merge_workloads", "check_mixture_config", "too_few_requests", "entry_name",
           "entry_params", "part_config"]

# One ``workloads`` entry: a built-in trace name or file path, or (name or path, trace_params) with
# trace_params as (key, value) pairs (a dict is accepted and kept as its pairs, in order).
WorkloadEntry = str | tuple[str, tuple[tuple[str, Any], ...]]


@dataclass(frozen=True)
class Part:
    """One member of a workload distribution: ``name`` as configured, ``label`` what results
    record (``NAME-vN`` of a built-in generator, the path of a file), the generator ``seed`` and
    the entry's own ``trace_params`` ((key, value) pairs; empty: the loader's defaults)."""

    name: str
    label: str
    seed: int
    trace_params: tuple[tuple[str, Any], ...] = ()

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.label, "seed": self.seed}
        if self.trace_params:
            out["trace_params"] = dict(self.trace_params)
        return out


_ENTRY_FORMS = ("a built-in trace name or file path, or (name or path, trace_params) with trace_params a dict "
                "or (key, value) pairs, e.g. ('burstgpt_like-v1', {'duration_s': 14400.0})")


def _normalize_entry(entry: Any, where: str) -> WorkloadEntry:
    """One entry as a string, or ``(name, ((key, value), ...))`` when it carries trace_params
    (an entry with empty trace_params is its name alone)."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
        params = entry[1]
        if isinstance(params, dict):
            params = tuple(params.items())
        if isinstance(params, (list, tuple)) and all(
                isinstance(kv, (list, tuple)) and len(kv) == 2 and isinstance(kv[0], str) for kv in params):
            pairs = tuple((k, v) for k, v in params)
            return (entry[0], pairs) if pairs else entry[0]
    raise ValueError(f"{where}: workloads entry {entry!r}: expected {_ENTRY_FORMS}")


def entry_name(entry: WorkloadEntry) -> str:
    """The trace name or path of a normalized ``workloads`` entry."""
    return entry if isinstance(entry, str) else entry[0]


def entry_params(entry: WorkloadEntry) -> tuple[tuple[str, Any], ...]:
    """The entry's own trace_params ((key, value) pairs; empty for a bare name or path)."""
    return () if isinstance(entry, str) else entry[1]


def normalize_workloads(value: Any, where: str) -> tuple[WorkloadEntry, ...]:
    """``workloads`` as a tuple of entries (``WorkloadEntry``): a list or tuple entry by entry,
    one string as its comma-separated entries (``--env-kwargs workloads=azure_conv,agentic``);
    raises ``ValueError`` naming ``where`` (and the entry) for anything else."""
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip())
    if isinstance(value, (list, tuple)):
        return tuple(_normalize_entry(x, where) for x in value)
    raise ValueError(f"{where}: workloads must be a tuple of entries ({_ENTRY_FORMS}), got {value!r}")


def check_mixture_config(cfg: Any, where: str) -> None:
    """Raises ``ValueError`` naming ``where`` and the field for a bad ``workloads`` /
    ``workload_seeds`` or for fields that cannot apply to every part (``trace_params``, a
    ``Trace`` object as ``trace``)."""
    w = cfg.workloads
    if not isinstance(w, tuple) or not all(x == _normalize_entry(x, where) and entry_name(x) for x in w):
        raise ValueError(f"{where}: workloads must be a tuple of entries ({_ENTRY_FORMS}), got {w!r}")
    if len(set(w)) != len(w):
        dup = sorted({repr(x) for x in w if w.count(x) > 1})
        raise ValueError(f"{where}: workloads lists {', '.join(dup)} more than once")
    n = cfg.workload_seeds
    if not is_integer(n) or n < 1:
        raise ValueError(f"{where}: workload_seeds must be an integer >= 1, got {n!r}")
    if w and cfg.trace_params:
        raise ValueError(f"{where}: trace_params cannot be combined with workloads (each entry takes its own: "
                         f"(name, trace_params)); got trace_params={dict(cfg.trace_params)!r}")
    if w and isinstance(cfg.trace, Trace):
        raise ValueError(f"{where}: workloads replaces trace; pass trace='default' (got a Trace object)")


# Bytes a loaded trace holds per request at the least: its arrival time (float64), prompt and output lengths (int64)
# (traces.Trace).
TRACE_REQUEST_BYTES = 24


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in trace (a name at an unavailable version counts: ``parts_of`` refuses it)."""
    try:
        return resolve_builtin(name) is not None
    except traces.TraceError:
        return True


def parts_of(cfg: Any, where: str) -> tuple[Part, ...]:
    """The parts of ``cfg.workloads`` in order (each built-in name ``workload_seeds`` times)."""
    check_mixture_config(cfg, where)
    out: list[Part] = []
    for entry in cfg.workloads:
        name, params = entry_name(entry), entry_params(entry)
        try:
            builtin = resolve_builtin(name) is not None
        except traces.TraceError as err:
            raise ValueError(f"{where}: workloads entry {name!r}: {err}") from None
        if builtin:
            out += [Part(name, versioned_name(name), int(cfg.trace_seed) + k, params)
                    for k in range(cfg.workload_seeds)]
        else:
            out.append(Part(name, name, int(cfg.trace_seed), params))
    return tuple(out)


def load_parts(cfg: Any, where: str) -> tuple[tuple[Part, ...], list[tuple[Trace, Trace]]]:
    """Every part's (history, episodes) under the config's split (``load_split`` per part)."""
    parts = parts_of(cfg, where)
    loaded = []
    for p in parts:
        try:
            loaded.append(load_split(part_config(cfg, p), where))
        except traces.TraceError as err:
            raise ValueError(f"{where}: workloads entry {p.name!r} (seed {p.seed}): {err}") from None
    return parts, loaded


def part_config(cfg: Any, part: Part) -> Any:
    """The single-trace config that loads ``part``: its trace, generator seed and trace_params."""
    return replace(cfg, trace=part.name, trace_seed=part.seed, trace_params=part.trace_params, workloads=())


def too_few_requests(where: str, cfg: Any, part: Part, short: TooFewRequests, held_out: bool) -> ValueError:
    """The one-line error for a part whose ``held_out`` (else training) part of the trace holds
    fewer requests than one window: the entry, its generator seed, the requests it has, the
    window, and what to set. For a built-in generator that is a longer ``duration_s`` for this
    entry alone, estimated from the shortfall with a 25% margin and rounded up to whole hours (a
    generator's requests grow in proportion to its duration), or a smaller ``window_requests``;
    for a file, ``held_out_frac`` or ``window_requests``."""
    entry = part.name if not part.trace_params else (part.name, dict(part.trace_params))
    which = {"all": "whole trace", "train": "training part", "test": "held-out part" if held_out else "training part"}
    builtin = resolve_builtin(part.name) is not None
    seed = f" (seed {part.seed})" if builtin else ""
    n = short.requests
    what = (f"{where}: workloads entry {entry!r}{seed} has {n} request{'' if n == 1 else 's'} in its "
            f"{which.get(cfg.split, cfg.split)} (split={cfg.split!r}, held_out_frac={cfg.held_out_frac}), fewer than "
            f"one window of window_requests={short.window}")
    if builtin:
        whole = traces.load_trace(part.name, seed=part.seed, **dict(part.trace_params))
        span = float(whole.arrival_s[-1] - whole.arrival_s[0])
        hours = max(1, int(np.ceil(1.25 * span * short.window / max(short.requests, 1) / 3600.0)))
        longer = (part.name, {**dict(part.trace_params), "duration_s": 3600.0 * hours})
        return ValueError(f"{what}; give the entry a longer trace, e.g. workloads entry {longer!r} (now "
                          f"{span:.0f} s), or set window_requests <= {short.requests}")
    frac = {"test": "raise held_out_frac" if held_out else "lower held_out_frac", "train": "lower held_out_frac"}
    knob = f"{frac[cfg.split]} (now {cfg.held_out_frac}) or " if cfg.split in frac else ""
    return ValueError(f"{what}; {knob}set window_requests <= {short.requests}")


def dense_offset_chains(trace: Trace, offset: int) -> tuple[Trace, int]:
    """``trace`` with its block ids remapped to ``offset .. offset + distinct - 1`` (so that parts
    of a mixture never share a block), and the next free id. A trace without chains is returned
    as it is."""
    if trace.block_ids is None:
        return trace, offset
    uniq, inv = np.unique(np.asarray(trace.block_ids), return_inverse=True)
    ids = (inv.astype(np.int64) + offset).astype(np.int64)
    return trace.replace(block_ids=ids), offset + int(uniq.size)


def merge_workloads(wls: list[S.Workload]) -> S.Workload:
    """The windows of every workload in order, one Workload (chains padded to the longest)."""
    B = max(w.chain_ids.shape[2] for w in wls)

    def pad(c: np.ndarray) -> np.ndarray:
        if c.shape[2] == B:
            return c
        out = np.full((c.shape[0], c.shape[1], B), -1, np.int64)
        out[:, :, : c.shape[2]] = c
        return out

    return S.Workload(
        arrival_s=np.ascontiguousarray(np.concatenate([w.arrival_s for w in wls])),
        prompt=np.ascontiguousarray(np.concatenate([w.prompt for w in wls])),
        output=np.ascontiguousarray(np.concatenate([w.output for w in wls])),
        pred_bucket=np.ascontiguousarray(np.concatenate([w.pred_bucket for w in wls])),
        n_requests=np.ascontiguousarray(np.concatenate([w.n_requests for w in wls])),
        chain_ids=np.ascontiguousarray(np.concatenate([pad(w.chain_ids) for w in wls])),
        chain_len=np.ascontiguousarray(np.concatenate([w.chain_len for w in wls])),
        failed=np.ascontiguousarray(np.concatenate([w.failed for w in wls])),
    )


def common_block_size(loaded: list[tuple[Trace, Trace]], labels: list[str], where: str) -> int | None:
    """The block size every part with prefix chains shares (None when no part has chains);
    raises ``ValueError`` naming two parts whose block sizes differ."""
    seen: dict[int, str] = {}
    for (hist, tr), label in zip(loaded, labels):
        if tr.block_size is not None:
            seen.setdefault(int(tr.block_size), label)
    if len(seen) > 1:
        (a, la), (b, lb) = list(seen.items())[:2]
        raise ValueError(f"{where}: workloads mix prefix-block sizes ({la}: {a} tokens, {lb}: {b} tokens); "
                         "a prefix cache indexes one block size")
    return next(iter(seen), None)


def part_index(groups: np.ndarray | None, window: int) -> int:
    """Index of the part that holds ``window`` (``groups``: window offsets of the parts, [P + 1];
    None for a single trace, whose one part is 0)."""
    return 0 if groups is None else int(np.searchsorted(groups, window, side="right")) - 1


def workload_played(parts: tuple[Part, ...] | None, groups: np.ndarray | None, window: int) -> dict[str, Any] | None:
    """What an episode of a mixture played (its part's family, generator seed and file, and the
    window), for the episode's extras; None for a single trace."""
    if groups is None or parts is None:
        return None
    return {**parts[part_index(groups, window)].info(), "window": int(window)}


def episode_extras(requests: Any, parts: tuple[Part, ...] | None, groups: np.ndarray | None,
                   window: int) -> dict[str, Any]:
    """A replica environment's episode extras: its per-request records (``requests``) and, in a
    mixture, what the episode played (``workload``: :func:`workload_played`)."""
    out: dict[str, Any] = {"requests": requests}
    played = workload_played(parts, groups, window)
    if played is not None:
        out["workload"] = played
    return out


@dataclass(frozen=True)
class Mixture:
    """What every environment's scenario of a workload mixture shares (``build_mixture``)."""

    parts: tuple[Part, ...]
    loaded: list[tuple[Trace, Trace]]  # each part's (history, episodes), as load_parts gives them
    engine: Any  # the engine for every part (prefix cache on if configured and any part has chains)
    cache_on: bool
    workload: S.Workload  # every part's windows in order (merge_workloads)
    natural_rate: np.ndarray  # float64 [W], requests/s of each window at its trace's own pace
    groups: np.ndarray  # int64 [P + 1], window offsets of the parts
    part_capacity_rps: np.ndarray  # float64 [P], one replica saturated on each part's history
    per_part: list[Any]  # what ``per_part`` returned for each part, in order
    name: str  # "mixture(label, ...)", each label once


def build_mixture(cfg: Any, where: str, per_part: Callable[[Any, Trace, Trace], Any] | None = None,
                  cache_needs_chains: bool = False, capacity_requests: int | None = None) -> Mixture:
    """The parts of ``cfg.workloads`` built for one engine: each part's windows (its prefix-block
    ids moved to a range of their own, ``dense_offset_chains``), natural rates and capacity
    measured on its history (``envs.core.capacity.measure_capacity_rps``), and ``per_part(engine,
    history, episodes)`` for what one environment adds per part (a prior, a bound).

    ``cfg`` has the fields of a single-trace config plus ``workloads`` / ``workload_seeds``
    (``window_requests``, ``predictor_accuracy``, ``trace_seed``, ``prefix_caching`` and
    ``engine_spec()``). Raises ``ValueError`` naming ``where`` for a bad entry, parts whose
    prefix-block sizes differ, or (``cache_needs_chains``) prefix caching asked for when no part
    has block ids. ``capacity_requests``: the capacity stream's length (``measure_capacity_rps``'s
    ``max_requests``; None: its default).
    """
    from envs.core.capacity import CAPACITY_REQUESTS, measure_capacity_rps
    from envs.core.replica import longest_accepted_output
    from envs.core.workload import build_workload

    parts, loaded = load_parts(cfg, where)
    labels = [p.label for p in parts]
    bs = common_block_size(loaded, labels, where)
    if cache_needs_chains and cfg.prefix_caching and bs is None:
        raise ValueError(f"{where}: prefix_caching=True but no trace of workloads {list(cfg.workloads)} has block ids")
    cache_on = bool(cfg.prefix_caching and bs is not None)
    eng = cfg.engine_spec().build(cache_on=cache_on, chain_block_tokens=bs or 1)
    # Requests the engine rejects at arrival (envs.core.replica.rejected_at_arrival) leave the others
    # served as if they were absent: rates and max_tokens over accepted requests only.
    max_out, ok = longest_accepted_output(eng, [p for ht in loaded for p in ht])
    eng = eng._replace(max_output=max_out)
    wls, rates, caps, extra, groups, next_id = [], [], [], [], [0], 0
    for part, (history, trace), ok_t in zip(parts, loaded, ok[1::2]):
        trace, next_id = dense_offset_chains(trace, next_id)
        try:  # the held-out part is the one that runs short (the training part is 1 - held_out_frac)
            wl, rate = build_workload(trace, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed, ok_t)
        except TooFewRequests as short:
            raise too_few_requests(where, cfg, part, short, held_out=True) from None
        try:
            cap_wl, _ = build_workload(history, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed)
        except TooFewRequests as short:
            raise too_few_requests(where, cfg, part, short, held_out=False) from None
        caps.append(measure_capacity_rps(
            eng, cap_wl, CAPACITY_REQUESTS if capacity_requests is None else capacity_requests,
            source=f"{where}: training part of workload {part.label} (seed {part.seed})"))
        extra.append(per_part(eng, history, trace) if per_part is not None else None)
        wls.append(wl)
        rates.append(rate)
        groups.append(groups[-1] + wl.arrival_s.shape[0])
    name = "mixture(" + ", ".join(dict.fromkeys(labels)) + ")"
    return Mixture(parts, loaded, eng, cache_on, merge_workloads(wls), np.concatenate(rates),
                   np.array(groups, np.int64), np.array(caps, np.float64), extra, name)
