"""Numba helpers that reproduce numpy's floating-point order, so that a compiled loop returns the
same bits as the numpy expression it replaces (same seed, same result)."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["pairwise_sum"]


@nb.njit(cache=True)
def _pairwise_leaf(a: np.ndarray, lo: int, n: int) -> float:
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


# Allocation-free halving for n up to 1,800: a split of n leaves halves of at most n / 2 + 7, so
# _pairwise_1 (splitting once, leaves below) takes n <= 242, _pairwise_2 n <= 470, _pairwise_3
# n <= 926, _pairwise_4 n <= 1,838.
@nb.njit(cache=True)
def _pairwise_1(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return _pairwise_leaf(a, lo, n)
    h = n // 2
    h -= h % 8
    return _pairwise_leaf(a, lo, h) + _pairwise_leaf(a, lo + h, n - h)


@nb.njit(cache=True)
def _pairwise_2(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return _pairwise_leaf(a, lo, n)
    h = n // 2
    h -= h % 8
    return _pairwise_1(a, lo, h) + _pairwise_1(a, lo + h, n - h)


@nb.njit(cache=True)
def _pairwise_3(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return _pairwise_leaf(a, lo, n)
    h = n // 2
    h -= h % 8
    return _pairwise_2(a, lo, h) + _pairwise_2(a, lo + h, n - h)


@nb.njit(cache=True)
def _pairwise_4(a: np.ndarray, lo: int, n: int) -> float:
    if n <= 128:
        return _pairwise_leaf(a, lo, n)
    h = n // 2
    h -= h % 8
    return _pairwise_3(a, lo, h) + _pairwise_3(a, lo + h, n - h)


@nb.njit(cache=True)
def pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """``a[lo:lo + n].sum()`` of a float64 array in numpy's order (``pairwise_sum`` of numpy's
    loops: sequential below 8 values, 8 accumulators up to 128, above that the sum of two halves
    split at a multiple of 8), so that a sum over a contiguous last axis is reproduced bit for bit
    (``x.sum(-1)`` of a C-contiguous array). Up to 1,800 values without allocating; longer sums
    halve on an explicit stack (a recursive numba function loaded from numba's cache crashed)."""
    if n <= 1800:
        return _pairwise_4(a, lo, n)
    los = np.empty(64, np.int64)
    ns = np.empty(64, np.int64)
    stage = np.zeros(64, np.int64)
    vals = np.empty(64)
    sp = 1
    nv = 0
    los[0], ns[0] = lo, n
    while sp > 0:
        t = sp - 1
        m = ns[t]
        h = m // 2
        h -= h % 8
        if m <= 128:
            vals[nv] = _pairwise_leaf(a, los[t], m)
            nv += 1
            sp -= 1
        elif stage[t] == 0:
            stage[t] = 1
            los[sp], ns[sp], stage[sp] = los[t], h, 0
            sp += 1
        elif stage[t] == 1:
            stage[t] = 2
            los[sp], ns[sp], stage[sp] = los[t] + h, m - h, 0
            sp += 1
        else:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
            sp -= 1
    return vals[0]
