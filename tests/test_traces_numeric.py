"""traces.numeric: compiled sums in numpy's order."""

from __future__ import annotations

import numpy as np

from traces.numeric import pairwise_sum


def test_pairwise_sum_is_numpys_at_every_length() -> None:
    """Every length up to 2,100 (the allocation-free levels and the stack beyond them) and a few
    long ones, at an offset, on values of mixed magnitude: bit-equal to ``ndarray.sum``."""
    rng = np.random.default_rng(7)
    for n in [*range(2100), 3001, 4096, 70_001]:
        a = rng.random(n + 5) * 10.0 ** rng.integers(-8, 8, n + 5)
        assert pairwise_sum(a, 5, n) == a[5:].sum(), n
    rows = rng.random((6, 3, 256)) ** 9
    s = rows.sum(axis=2)
    assert all(pairwise_sum(rows[i, j], 0, 256) == s[i, j] for i in range(6) for j in range(3))
