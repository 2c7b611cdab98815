"""Trace transforms. Each returns a new Trace and appends what it did to meta.transforms."""

from __future__ import annotations

import math

import numpy as np

from traces.errors import TraceError
from traces.trace import Trace
from traces.checks import is_real, positive_real
from traces.synthetic import _seed

__all__ = ["rescale_rate", "window", "windows", "split", "subsample"]


def rescale_rate(trace: Trace, target_rps: float) -> Trace:
    """Scale all times by rate/target so the mean rate becomes `target_rps` (burst shape kept)."""
    target = positive_real(target_rps, "target_rps", TraceError)
    rate = trace.rate_rps
    if not (math.isfinite(rate) and rate > 0):
        raise TraceError(f"trace {trace.meta.name!r} has no finite positive rate ({rate}); cannot rescale")
    factor = rate / target
    meta = trace.meta.with_transform(f"rescale_rate(target_rps={target:g}): times x {factor:.6g}")
    return trace.replace(arrival_s=trace.arrival_s * factor, meta=meta)


def window(trace: Trace, t0_s: float, t1_s: float) -> Trace:
    """Requests with t0 <= arrival < t1, times re-zeroed to t0 (t1 may be inf)."""
    if not (is_real(t0_s, finite=True) and t0_s >= 0) or not (is_real(t1_s) and t1_s > t0_s):  # a str: TypeError
        raise TraceError(f"window needs 0 <= t0_s < t1_s, got t0_s={t0_s!r}, t1_s={t1_s!r}")
    lo, hi = np.searchsorted(trace.arrival_s, [t0_s, t1_s], side="left")
    sub = trace.select(slice(int(lo), int(hi)))
    meta = trace.meta.with_transform(f"window({t0_s:g}, {t1_s:g}): kept {hi - lo} of {len(trace)} requests, re-zeroed")
    return sub.replace(arrival_s=sub.arrival_s - float(t0_s), meta=meta)


def windows(trace: Trace, length_s: float, *, stride_s: float | None = None) -> list[Trace]:
    """Consecutive (or, with stride < length, overlapping) windows of `length_s` fully inside the trace.

    Windows start at 0, stride_s apart (default: length_s); a tail shorter than one window is
    not returned, and a trace shorter than one window is an error.
    """
    length = positive_real(length_s, "length_s", TraceError)
    stride = length if stride_s is None else positive_real(stride_s, "stride_s", TraceError)
    end = trace.duration_s
    if end < length:
        raise TraceError(f"trace {trace.meta.name!r} lasts {end:g} s, shorter than one window of {length:g} s")
    count = int(math.floor((end - length) / stride + 1e-9)) + 1
    return [window(trace, i * stride, i * stride + length) for i in range(count)]


def split(trace: Trace, held_out_frac: float = 0.3) -> tuple[Trace, Trace]:
    """(train, held_out) by time: the first 1 - frac of the duration, then the rest (both re-zeroed).

    Raises TraceError naming the trace, the split and the sizes when either part would be empty
    (trace files start at their first arrival, so this happens only to traces built in memory
    whose clock starts far before their first request).
    """
    if not (isinstance(held_out_frac, (int, float)) and 0 < held_out_frac < 1):
        raise TraceError(f"held_out_frac must lie in (0, 1), got {held_out_frac!r}")
    if trace.duration_s <= 0:
        raise TraceError(f"trace {trace.meta.name!r} has zero duration ({len(trace)} request(s), all at one "
                         f"instant); cannot split by time (split='all' plays it whole)")
    cut = trace.duration_s * (1.0 - held_out_frac)
    train = window(trace, 0.0, cut)
    held = window(trace, cut, math.inf)
    tag = f"split(held_out_frac={held_out_frac:g}) at {cut:g} s"
    if len(train) == 0 or len(held) == 0:
        empty = "training" if len(train) == 0 else "held-out"
        raise TraceError(
            f"trace {trace.meta.name!r}: {tag} leaves the {empty} part empty (training {len(train)}, "
            f"held-out {len(held)} of {len(trace)} requests; arrivals span {float(trace.arrival_s[0]):g} .. "
            f"{trace.duration_s:g} s); time is measured from t = 0, so a trace whose first arrival is "
            "far from 0 must be re-zeroed first (traces.window(trace, first_arrival, inf))"
        )
    return (train.replace(meta=train.meta.with_transform(f"{tag}: training part")),
            held.replace(meta=held.meta.with_transform(f"{tag}: held-out part")))


def subsample(trace: Trace, frac: float, seed: int = 0) -> Trace:
    """Keep round(frac * n) requests chosen uniformly without replacement (order kept).

    Raises TraceError for a frac outside (0, 1], a seed that is not an integer >= 0 (was numpy's
    'expected non-negative integer' from deep in the seeding) and a frac that keeps no request
    (was an empty trace)."""
    if not (isinstance(frac, (int, float)) and 0 < frac <= 1):
        raise TraceError(f"frac must lie in (0, 1], got {frac!r}")
    try:
        seed = _seed(seed)
    except TraceError as e:
        raise TraceError(f"subsample: {e}") from None
    n = len(trace)
    k = int(round(frac * n))
    if k == 0 and n > 0:
        raise TraceError(f"subsample(frac={frac:g}) of trace {trace.meta.name!r} keeps none of its {n} requests "
                         f"(round(frac x {n}) = 0); frac must be above {0.5 / n:.3g}")
    keep = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    sub = trace.select(keep)
    return sub.replace(meta=trace.meta.with_transform(f"subsample(frac={frac:g}, seed={seed}): kept {k} of {n} requests"))
