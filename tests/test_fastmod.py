"""``envs.core.fastmod``: ``a % d`` by Lemire's direct remainder equals the division's for every
64-bit ``a`` tried (random, edges, multiples of ``d`` and their neighbours) and divisors across [1, 2**32)."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from envs.core.fastmod import fastmod, fastmod_magic


@nb.njit
def _both(a, d):
    lo, hi = fastmod_magic(np.uint64(d))
    got = np.empty(a.shape[0], np.uint64)
    want = np.empty(a.shape[0], np.uint64)
    for i in range(a.shape[0]):
        got[i] = fastmod(a[i], lo, hi, np.uint64(d))
        want[i] = a[i] % np.uint64(d)
    return got, want


@pytest.mark.parametrize("d", [1, 2, 3, 7, 64, 6496, 6497, 65_537, 12_345_677, 2**31 - 1, 2**31, 2**32 - 1])
def test_fastmod_equals_the_remainder(d):
    rng = np.random.default_rng(d)
    k = np.arange(1, 200, dtype=np.uint64)
    a = np.concatenate([
        rng.integers(0, 2**64, 20_000, dtype=np.uint64, endpoint=False),
        np.array([0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1], np.uint64),
        k * np.uint64(d), k * np.uint64(d) - np.uint64(1), k * np.uint64(d) + np.uint64(1),
        np.uint64(2**64 - 1) - k,
    ])
    got, want = _both(a, d)
    assert (got == want).all()
    assert (want == a % np.uint64(d)).all()  # numba's % is the division


def test_fastmod_refuses_signed_arguments():
    @nb.njit
    def bad(a):
        lo, hi = fastmod_magic(np.uint64(5))
        return fastmod(a, lo, hi, np.uint64(5))

    with pytest.raises(nb.core.errors.TypingError):
        bad(np.int64(7))
