"""Length distributions for generators: empirical quantile tables, lognormals, a Gaussian copula.

Quantile tables (inverse-CDF knots fitted from a real file) reproduce multimodal length
distributions that no single parametric family fits; a Gaussian copula adds the small measured
rank correlation between prompt and output length without changing either marginal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traces.errors import TraceError

__all__ = ["QuantileTable", "LogNormal", "norm_cdf", "correlated_uniforms"]


@dataclass(frozen=True)
class QuantileTable:
    """Inverse CDF given by knots (probs[i], values[i]), linear in between; probs span 0..1."""

    probs: np.ndarray
    values: np.ndarray

    @classmethod
    def from_params(cls, d: dict, name: str) -> "QuantileTable":
        probs = np.asarray(d["probs"], dtype=np.float64)
        values = np.asarray(d["values"], dtype=np.float64)
        if probs.shape != values.shape or probs.ndim != 1 or probs.size < 2:
            raise TraceError(f"{name}: probs and values must be 1-D arrays of equal length >= 2")
        if probs[0] != 0.0 or probs[-1] != 1.0 or (np.diff(probs) <= 0).any():
            raise TraceError(f"{name}: probs must increase strictly from 0 to 1")
        if (np.diff(values) < 0).any():
            raise TraceError(f"{name}: values must be non-decreasing")
        return cls(probs, values)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.probs, self.values)

    def sample_int(self, u: np.ndarray, minimum: int = 1) -> np.ndarray:
        """Integer token counts at uniforms u (rounded to nearest; knots are >= `minimum`)."""
        if self.values[0] < minimum - 0.5:
            raise TraceError(f"quantile table starts at {self.values[0]}, below the minimum {minimum}")
        return np.rint(self.ppf(u)).astype(np.int64)

    def mean(self) -> float:
        """Exact mean of the piecewise-linear inverse CDF."""
        return float(np.sum(np.diff(self.probs) * (self.values[1:] + self.values[:-1]) / 2))


@dataclass(frozen=True)
class LogNormal:
    """Lognormal fixed by its median and mean (the statistics papers publish)."""

    median: float
    mean: float

    def __post_init__(self) -> None:
        if not (0 < self.median < self.mean):
            raise TraceError(f"LogNormal needs 0 < median < mean, got median={self.median}, mean={self.mean}")

    @property
    def sigma(self) -> float:
        return float(np.sqrt(2.0 * np.log(self.mean / self.median)))

    def sample_int(self, z: np.ndarray) -> np.ndarray:
        """Token counts ceil(median * exp(sigma z)) for standard normals z; always >= 1."""
        return np.ceil(self.median * np.exp(self.sigma * z)).astype(np.int64)


def norm_cdf(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF via erfc (Abramowitz & Stegun 7.1.26 on |x|, error < 1.5e-7).

    numpy has no erf and scipy is not a runtime dependency of this package.
    """
    x = np.abs(z) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    half_erfc = 0.5 * poly * np.exp(-x * x)
    return np.where(z >= 0, 1.0 - half_erfc, half_erfc)


def correlated_uniforms(rng: np.random.Generator, n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Two uniform marginals joined by a Gaussian copula with normal correlation r."""
    if not -1.0 <= r <= 1.0:
        raise TraceError(f"copula correlation must lie in [-1, 1], got {r}")
    z = rng.standard_normal((2, n))
    z2 = r * z[0] + np.sqrt(1.0 - r * r) * z[1]
    return norm_cdf(z[0]), norm_cdf(z2)
