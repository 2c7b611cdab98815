"""``envs.core.prefetch.prefetch``: a cache hint that compiles for an array and an index tuple of its
rank, changes no value, and is refused (typing error) for an index of another rank."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from envs.core.prefetch import prefetch


@nb.njit
def _sum_with_hints(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        prefetch(a, (min(i + 1, a.shape[0] - 1),))
        prefetch(b, (i % b.shape[0], 0, 1))
        s += a[i]
    return s


def test_prefetch_changes_nothing():
    a = np.arange(10.0)
    b = np.ones((3, 2, 4), np.int32)
    assert _sum_with_hints(a, b) == 45.0
    assert (b == 1).all() and (a == np.arange(10.0)).all()


def test_prefetch_refuses_an_index_of_another_rank():
    @nb.njit
    def bad(a):
        prefetch(a, (0,))

    with pytest.raises(nb.core.errors.TypingError):
        bad(np.zeros((2, 2)))
