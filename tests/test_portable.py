"""traces.portable: samplers whose draws depend on the seed alone (not on the machine, its math
library or numpy's version), checked for their distributions and pinned by digest."""

from __future__ import annotations

import hashlib
import math

import numba as nb
import numpy as np
import pytest
from scipy import stats

from traces import portable as P

# SHA-256 of draws() recorded on the 2-core development box (numpy 2.4.6, numba 0.68.1) and equal on the
# 16-core AVX-512 GPU host (numpy 2.5.2, numba 0.68.0), where numpy's own multinomial draws other counts.
PINNED = {
    "binomial": "fbc9b3050b688a4021aed34705331d89f51ccb87d8570b9bc6f5a16ebb9207d3",
    "normal": "26eb6ab32849a538f8e50a22039ee0e4e4d850bc5c4f5aa19baf2a04cbd2183c",
    "multinomial": "e5350208495fc8343f784281384de36d4ddc10dc9d02ce2b4f74630b158adefb",
    "permutation": "823212540a369d6f5a7cac523f5e9bb2849a0781bd24e230a38cad68980e1087",
    "log": "e54f491bcd41dcb355e72f9566b21ad0cb2e13b1ad4e061cc435359386555c23",
    "exp": "d3c5dc4c539acc105bfa06c9938e49776e876f41ddb1d7265fc6b9f728321a67",
    "pow_neg": "3a8744c657afa60e9e0b7f0b11ee1f18751d12c1c4c363dd8f3fc3c1d0368704",
}


def draws() -> dict[str, np.ndarray]:
    """A fixed sequence from every sampler: binomials over both methods' ranges, the edges
    included, normals, a multinomial row, a permutation, and log / exp / pow over wide grids
    (grids built by exact operations: numpy's geomspace goes through the platform's pow)."""
    rng = np.random.default_rng(20261203)
    b = [P.binomial(rng, n, p) for n in (0, 1, 7, 40, 300, 4096, 32768, 1_000_000)
         for p in (0.0, 0.003, 0.05, 0.2, 0.5, 0.77, 0.999, 1.0) for _ in range(25)]
    z = np.empty(5001)
    P.fill_standard_normal(rng, z)
    m = np.zeros(256, np.int64)
    P.multinomial_row(rng, 32768, np.full(256, 1 / 256), m)
    return {"binomial": np.array(b, np.int64), "normal": z, "multinomial": m, "permutation": P.permutation(rng, 300),
            "log": np.array([P.log(math.ldexp(1.0 + (i % 97) / 97.0, (7 * i) % 1990 - 995)) for i in range(4001)]),
            "exp": np.array([P.exp(v) for v in np.linspace(-745, 709, 4001)]),
            "pow_neg": P.pow_neg(np.arange(1.0, 513.0), 0.6)}


def test_draws_equal_the_pinned_digests() -> None:
    got = {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in draws().items()}
    assert got == PINNED, [k for k in PINNED if got[k] != PINNED[k]]


def _ulps(got: float, want: float) -> float:
    return abs(got - want) / math.ulp(want) if want != 0.0 else abs(got)


def test_log_and_exp_within_one_ulp_of_libm() -> None:
    xs = np.concatenate([np.geomspace(5e-324, 1.7e308, 20001), np.linspace(0.5, 2.0, 20001)])
    assert max(_ulps(P.log(float(x)), math.log(x)) for x in xs) <= 1.0
    ys = np.linspace(-708.0, 709.0, 40001)
    assert max(_ulps(P.exp(float(y)), math.exp(y)) for y in ys) <= 1.0
    assert P.log(1.0) == 0.0 and P.exp(0.0) == 1.0 and P.log(0.0) == -math.inf and math.isnan(P.log(-1.0))
    assert P.exp(710.0) == math.inf and P.exp(-746.0) == 0.0 and math.isnan(P.exp(math.nan))
    assert np.array_equal(P.pow_neg(np.arange(1.0, 9.0), 0.0), np.ones(8))


@nb.njit(cache=True)
def _many(seed_rng: np.random.Generator, n: int, p: float, size: int) -> np.ndarray:
    out = np.empty(size, np.int64)
    for i in range(size):
        out[i] = P.binomial(seed_rng, n, p)
    return out


@pytest.mark.parametrize("n,p", [(10, 0.3), (1000, 0.02), (300, 0.2), (32768, 0.004), (32768, 0.3), (5000, 0.9),
                                 (200, 0.97), (65536, 0.49)])
def test_binomial_has_the_binomial_distribution(n, p) -> None:
    """Chi-square goodness of fit over the bins with >= 10 expected draws (200,000 draws, fixed seed:
    inversion below n min(p, 1-p) = 30, BTPE above; p > 1/2 by symmetry)."""
    size = 200_000
    x = _many(np.random.default_rng(7), n, p, size)
    assert x.min() >= 0 and x.max() <= n
    sd = math.sqrt(n * p * (1 - p))
    k = np.arange(max(0, int(n * p - 7 * sd)), min(n, int(n * p + 7 * sd)) + 1)
    obs = np.bincount(np.clip(x - k[0], 0, len(k) - 1), minlength=len(k))
    want = stats.binom.pmf(k, n, p) * size
    m = want >= 10
    chi2 = float(((obs[m] - want[m]) ** 2 / want[m]).sum())
    assert stats.chi2.sf(chi2, int(m.sum()) - 1) > 1e-3
    assert abs(x.mean() - n * p) < 5 * sd / math.sqrt(size)


def test_binomial_edges() -> None:
    rng = np.random.default_rng(0)
    assert P.binomial(rng, 0, 0.5) == 0 and P.binomial(rng, 50, 0.0) == 0 and P.binomial(rng, 50, 1.0) == 50


def test_multinomial_row_sums_and_means() -> None:
    rng = np.random.default_rng(3)
    p = np.random.default_rng(4).dirichlet(np.ones(64))
    tot = np.zeros(64, np.int64)
    for _ in range(2000):
        row = np.zeros(64, np.int64)
        P.multinomial_row(rng, 4096, p, row)
        assert row.sum() == 4096 and row.min() >= 0
        tot += row
    assert np.all(np.abs(tot / (2000 * 4096) - p) <= 5 * np.sqrt(p / (2000 * 4096)) + 1e-9)


def test_standard_normal_moments_and_shape() -> None:
    z = np.empty((3, 100_001))
    P.fill_standard_normal(np.random.default_rng(9), z)
    flat = z.reshape(-1)
    assert abs(flat.mean()) < 0.01 and abs(flat.std() - 1) < 0.01
    assert stats.kstest(flat, "norm").pvalue > 1e-3


def test_permutation_is_a_permutation_and_uniform() -> None:
    rng = np.random.default_rng(5)
    first = np.zeros((4, 4))
    for _ in range(8000):
        perm = P.permutation(rng, 4)
        assert sorted(perm) == [0, 1, 2, 3]
        first[np.arange(4), perm] += 1
    np.testing.assert_allclose(first / 8000, 0.25, atol=0.03)


def test_binomial_refuses_nan_p_instead_of_looping() -> None:
    # review rv3: with p = nan every comparison is False, so BTPE rejected every candidate forever
    with pytest.raises(ValueError, match="binomial: p is nan"):
        P.binomial(np.random.default_rng(0), 10, math.nan)
