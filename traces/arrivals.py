"""Arrival processes: Poisson, Gamma renewal (CV > 1), 2-state MMPP, optional diurnal modulation.

Real LLM traffic is burstier than Poisson at every scale: the Azure 2023 conversation trace has
an index of dispersion of 1.4 at 1 s but 16 at 60 s, which a renewal process cannot produce but a
slowly switching MMPP can. Diurnal modulation is a deterministic time change t = L^-1(u) of any
stationary process, with L(t) the integral of the rate profile (mean 1 over a period).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traces.checks import positive_real
from traces.errors import TraceError

__all__ = ["MMPP2", "Diurnal", "generate_arrivals", "ARRIVAL_KINDS"]

ARRIVAL_KINDS = ("poisson", "gamma", "mmpp")
# Most arrivals a generator is asked for (rate x duration): 2**31 - 1, the request count an int32 index reaches,
# as the environments store requests (envs.core.state). duration_s=1e12 of azure_conv asked for 3.7e12 and grew
# past 13 GiB of memory before it was stopped.
MAX_ARRIVALS = 2**31 - 1


@dataclass(frozen=True)
class MMPP2:
    """Markov-modulated Poisson process: rates[s] arrivals/s in state s, leaving s at switch[s] /s."""

    rates: tuple[float, float]
    switch: tuple[float, float]

    def __post_init__(self) -> None:
        if min(self.rates) < 0 or max(self.rates) <= 0 or min(self.switch) <= 0:
            raise TraceError(f"MMPP2 needs rates >= 0 (not all 0) and switch rates > 0, got {self}")

    @property
    def stationary(self) -> np.ndarray:
        """Long-run share of time in each state."""
        s0, s1 = self.switch
        return np.array([s1, s0]) / (s0 + s1)

    @property
    def mean_rate(self) -> float:
        return float(self.stationary @ np.asarray(self.rates))

    def scaled_to(self, rate_rps: float) -> "MMPP2":
        """Same modulating chain (burst durations), arrival rates scaled to the target mean."""
        k = rate_rps / self.mean_rate
        return MMPP2((self.rates[0] * k, self.rates[1] * k), self.switch)

    def idc(self, window_s: np.ndarray) -> np.ndarray:
        """Index of dispersion of counts Var/Mean in windows of length w (Heffes & Lucantoni 1986)."""
        (l0, l1), (r0, r1) = self.rates, self.switch
        s = r0 + r1
        w = np.asarray(window_s, dtype=np.float64)
        return 1 + 2 * (l0 - l1) ** 2 * r0 * r1 / (s**3 * self.mean_rate) * (1 - (1 - np.exp(-s * w)) / (s * w))

    def interarrival_cv(self) -> float:
        """CV of the stationary inter-arrival time (MAP moments: E[X^k] = k! phi (-D0)^-k 1)."""
        (l0, l1), (r0, r1) = self.rates, self.switch
        d0 = np.array([[-(l0 + r0), r0], [r1, -(l1 + r1)]])
        d1 = np.diag([l0, l1])
        phi = self.stationary @ d1
        phi = phi / phi.sum()
        m = np.linalg.inv(-d0)
        m1 = phi @ m @ np.ones(2)
        m2 = 2 * phi @ m @ m @ np.ones(2)
        return float(np.sqrt(m2 - m1 * m1) / m1)


@dataclass(frozen=True)
class Diurnal:
    """Rate profile 1 + a cos(2 pi (t - peak_s) / period_s), a from the peak-to-trough ratio."""

    peak_to_trough: float
    peak_s: float
    period_s: float = 86400.0

    def __post_init__(self) -> None:
        if not self.peak_to_trough >= 1.0 or not self.period_s > 0:
            raise TraceError(f"Diurnal needs peak_to_trough >= 1 and period_s > 0, got {self}")

    @property
    def amplitude(self) -> float:
        r = self.peak_to_trough
        return (r - 1.0) / (r + 1.0)

    def integral(self, t: np.ndarray) -> np.ndarray:
        """L(t) = integral_0^t of the profile; strictly increasing since amplitude < 1."""
        w = 2 * np.pi / self.period_s
        a = self.amplitude
        return t + a / w * (np.sin(w * (t - self.peak_s)) - np.sin(-w * self.peak_s))

    def warp(self, u: np.ndarray, duration_s: float) -> np.ndarray:
        """Map operational times u in [0, L(duration)) to wall-clock times."""
        n_grid = int(max(2048, min(2_000_000, duration_s / 10.0)))
        grid = np.linspace(0.0, duration_s, n_grid)
        return np.interp(u, self.integral(grid), grid)


def _renewal(rng: np.random.Generator, horizon: float, draw, mean_gap: float) -> np.ndarray:
    """Cumulative sums of i.i.d. gaps until the horizon, drawn in vectorized batches."""
    parts: list[np.ndarray] = []
    t0 = 0.0
    batch = int(horizon / mean_gap * 1.05) + 64
    while True:
        t = t0 + np.cumsum(draw(batch))
        parts.append(t)
        if t[-1] >= horizon:
            break
        t0 = float(t[-1])
        batch = int((horizon - t0) / mean_gap * 1.1) + 64
    t = np.concatenate(parts)
    return t[t < horizon]


def _mmpp(rng: np.random.Generator, horizon: float, m: MMPP2) -> np.ndarray:
    """Sojourns alternate between the two states; Poisson counts per sojourn at uniform times."""
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    states: list[np.ndarray] = []
    state = int(rng.random() < m.stationary[1])
    t0 = 0.0
    mean_cycle = 1.0 / m.switch[0] + 1.0 / m.switch[1]
    while t0 < horizon:
        k = 2 * (int((horizon - t0) / mean_cycle) + 8)
        st = (state + np.arange(k)) % 2
        d = rng.exponential(1.0, k) / np.asarray(m.switch)[st]
        e = t0 + np.cumsum(d)
        starts.append(e - d)
        ends.append(e)
        states.append(st)
        t0 = float(e[-1])
        state = int((st[-1] + 1) % 2)
    s = np.concatenate(starts)
    e = np.minimum(np.concatenate(ends), horizon)
    st = np.concatenate(states)
    keep = s < horizon
    s, e, st = s[keep], e[keep], st[keep]
    counts = rng.poisson(np.asarray(m.rates)[st] * (e - s))
    base = np.repeat(s, counts)
    span = np.repeat(e - s, counts)
    return np.sort(base + rng.random(base.shape[0]) * span)


def generate_arrivals(
    rng: np.random.Generator,
    duration_s: float,
    rate_rps: float,
    kind: str = "poisson",
    *,
    cv: float | None = None,
    mmpp: MMPP2 | None = None,
    diurnal: Diurnal | None = None,
) -> np.ndarray:
    """Sorted arrival times in [0, duration_s) with long-run mean rate `rate_rps`.

    kind: 'poisson'; 'gamma' (renewal with inter-arrival CV `cv`); 'mmpp' (`mmpp` rescaled to
    `rate_rps`). With `diurnal`, the process runs in operational time and is warped to wall clock.
    """
    positive_real(duration_s, "duration_s", TraceError)
    positive_real(rate_rps, "rate_rps", TraceError)
    horizon = float(diurnal.integral(np.array([duration_s]))[0]) if diurnal else float(duration_s)
    if not rate_rps * horizon <= MAX_ARRIVALS:
        raise TraceError(f"duration_s={duration_s:g} at rate_rps={rate_rps:g} asks for about {rate_rps * horizon:.3g} "
                         f"arrivals, more than a trace holds ({MAX_ARRIVALS}, 2**31 - 1); lower duration_s or rate_rps")
    if kind == "poisson":
        t = _renewal(rng, horizon, lambda k: rng.exponential(1.0 / rate_rps, k), 1.0 / rate_rps)
    elif kind == "gamma":
        if cv is None or not cv > 0:
            raise TraceError(f"arrivals='gamma' needs cv > 0, got {cv!r}")
        shape = 1.0 / (cv * cv)
        scale = 1.0 / (rate_rps * shape)
        t = _renewal(rng, horizon, lambda k: rng.gamma(shape, scale, k), 1.0 / rate_rps)
    elif kind == "mmpp":
        if mmpp is None:
            raise TraceError("arrivals='mmpp' needs MMPP2 parameters")
        t = _mmpp(rng, horizon, mmpp.scaled_to(rate_rps))
    else:
        raise TraceError(f"unknown arrival process {kind!r}; choose one of {ARRIVAL_KINDS}")
    if diurnal:
        t = diurnal.warp(t, float(duration_s))
    return t.astype(np.float64)
