"""Exact ``a % d`` for uint64 ``a`` by a multiplication instead of a division, in numba kernels.

A kernel that reduces many random 64-bit draws modulo the same ``d`` (PrefixEviction-v0's sampled
candidates: ~240 draws per decision modulo the cache's capacity) pays a 64-bit division for each
(about 2.4 ns of throughput each where it was measured, most of the draw). Lemire, Kaser and Kurz,
"Faster Remainder by Direct Computation" (Software: Practice and Experience, 2019; the ``fastmod``
library's ``fastmod_u64``): with ``M = floor((2**128 - 1) / d) + 1``, ``a % d`` is the high 64 bits of
``(M * a mod 2**128) * d`` for every 64-bit ``a`` and ``d`` in ``[1, 2**64)`` (their Theorem 1 with
N = 64, F = 128): the same integer, not an approximation.

    m_lo, m_hi = fastmod_magic(d)         # once per divisor; d in [1, 2**32)
    r = fastmod(a, m_lo, m_hi, d)         # == a % d

Both take and return ``np.uint64``; the 128-bit products are LLVM ``i128`` arithmetic (no library call).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@nb.njit(inline="always", cache=True, _nrt=False)
def fastmod_magic(d):
    """``(lo, hi)``, the uint64 halves of ``M = floor((2**128 - 1) / d) + 1`` (mod 2**128) for a
    divisor ``d`` in ``[1, 2**32)`` (long division in 32-bit limbs: four 64-bit divisions). A ``d``
    outside that range gives a wrong M; callers check (``fastmod``'s own docstring)."""
    d = np.uint64(d)
    rem = np.uint64(0)
    cur = (rem << _S32) | _M32
    q3 = cur // d
    rem = cur - q3 * d
    cur = (rem << _S32) | _M32
    q2 = cur // d
    rem = cur - q2 * d
    cur = (rem << _S32) | _M32
    q1 = cur // d
    rem = cur - q1 * d
    cur = (rem << _S32) | _M32
    q0 = cur // d
    hi = (q3 << _S32) | q2
    lo = ((q1 << _S32) | q0) + np.uint64(1)
    if lo == np.uint64(0):
        hi += np.uint64(1)
    return lo, hi


@intrinsic
def fastmod(typingctx, a, m_lo, m_hi, d):
    """``a % d`` (uint64) from ``fastmod_magic(d)``'s ``(m_lo, m_hi)``: the high 64 bits of
    ``(M * a mod 2**128) * d``, computed as Lemire's ``mul128_u64`` does (two 64x64 -> 128 products;
    their sum stays below 2**128)."""
    if not all(isinstance(t, types.Integer) and not t.signed and t.bitwidth == 64 for t in (a, m_lo, m_hi, d)):
        return None

    def codegen(context, builder, sig, args):
        x, lo, hi, dv = args
        i64, i128 = ir.IntType(64), ir.IntType(128)
        s64 = ir.Constant(i128, 64)
        m = builder.or_(builder.shl(builder.zext(hi, i128), s64), builder.zext(lo, i128))
        low = builder.mul(m, builder.zext(x, i128))
        d128 = builder.zext(dv, i128)
        bottom = builder.lshr(builder.mul(builder.zext(builder.trunc(low, i64), i128), d128), s64)
        top = builder.mul(builder.lshr(low, s64), d128)
        return builder.trunc(builder.lshr(builder.add(bottom, top), s64), i64)

    return types.uint64(a, m_lo, m_hi, d), codegen
