"""Random draws that are the same on every machine (numba; the load generator's samplers).

A seed must give the same episode everywhere. numpy's ``Generator`` does not promise that: its
stream may change between numpy versions (NEP 19), and its samplers call the platform's ``log``,
``exp`` and ``pow``, whose last bits differ between math libraries and CPUs (numpy's SIMD paths
included). A 1-ulp difference flips one rejection test of a binomial sampler, and every draw after
it shifts: the same seed gave other expert counts with numpy 2.5.2 on an AVX-512 host than with
numpy 2.4.6 here. These samplers use only the bit generator's doubles (``Generator.random``: PCG64's
53 high bits times 2^-53, integer arithmetic), IEEE ``+ - * /`` and ``sqrt`` (correctly rounded on
every IEEE machine; numba emits no fused multiply-add without fastmath), ``frexp`` / ``ldexp``
(exact), and ``log`` / ``exp`` computed here by fdlibm's reductions and polynomials (Sun
Microsystems 1993, ``e_log.c`` / ``e_exp.c``: error below 1 ulp), so the draws depend on the seed
alone.

Samplers (each takes a ``np.random.Generator`` inside numba):

* ``binomial(rng, n, p)``: numpy's choice of method (inversion when min(p, 1-p) n <= 30, else
  BTPE: Kachitvichyanukul & Schmeiser, "Binomial random variate generation", CACM 31(2), 1988),
  written from the paper with this module's ``log`` / ``exp``;
* ``multinomial_row(rng, n, p, out)``: one conditional binomial per category (numpy's
  ``random_multinomial``), added to ``out``;
* ``fill_standard_normal(rng, out)``: Marsaglia's polar method (Marsaglia & Bray, SIAM Review
  6(3), 1964), both values of each accepted pair used, C order;
* ``permutation(rng, n)``: Fisher-Yates, each index drawn as floor(u (i + 1)) (bias below 2^-40
  for n < 2^13).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["log", "exp", "pow_neg", "binomial", "multinomial_row", "fill_standard_normal", "permutation"]

# fdlibm e_log.c
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT_HALF = 0.70710678118654752440
# fdlibm e_exp.c
_INV_LN2 = 1.44269504088896338700e+00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_EXP_OVER = 7.09782712893383973096e+02
_EXP_UNDER = -7.45133219101941108420e+02


@nb.njit(cache=True)
def log(x: float) -> float:
    """Natural log of x > 0 (fdlibm's e_log.c: x = 2^k (1 + f), log(1 + f) = f - s (f - R) with
    s = f / (2 + f) and R a degree-14 polynomial in s); -inf at 0, nan below 0 or at nan."""
    if not x > 0.0:
        return -math.inf if x == 0.0 else math.nan
    if x == math.inf:
        return x
    m, e = math.frexp(x)  # x = m 2^e, 0.5 <= m < 1
    if m < _SQRT_HALF:
        m = m * 2.0
        e -= 1
    f = m - 1.0  # exact (Sterbenz): sqrt(1/2) <= m < sqrt(2)
    k = float(e)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


@nb.njit(cache=True)
def exp(x: float) -> float:
    """e^x (fdlibm's e_exp.c: x = k ln2 + r, |r| <= ln2 / 2, e^r from a degree-5 rational
    correction, scaled by 2^k); inf above 709.78, 0 below -745.13, nan at nan."""
    if x != x:
        return x
    if x > _EXP_OVER:
        return math.inf
    if x < _EXP_UNDER:
        return 0.0
    k = int(_INV_LN2 * x + (0.5 if x >= 0.0 else -0.5))  # truncation: nearest integer to x / ln2
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return math.ldexp(y, k)


@nb.njit(cache=True)
def pow_neg(base: np.ndarray, s: float) -> np.ndarray:
    """base ** -s elementwise for base > 0 (exp(-s log(base)) with this module's log and exp),
    float64 [n]; exactly 1.0 where s == 0."""
    out = np.empty(base.shape[0])
    for i in range(base.shape[0]):
        out[i] = 1.0 if s == 0.0 else exp(-s * log(base[i]))
    return out


@nb.njit(cache=True)
def _inversion(rng: np.random.Generator, n: int, p: float) -> int:
    """Binomial(n, p) for p <= 1/2 and n p <= 30 by sequential search from 0 (restarting past the
    mean + 10 standard deviations, where the remaining mass is below rounding)."""
    q = 1.0 - p
    qn = exp(n * log(q))
    mu = n * p
    bound = min(float(n), mu + 10.0 * math.sqrt(mu * q + 1.0))
    x = 0
    px = qn
    u = rng.random()
    while u > px:
        x += 1
        if x > bound:
            x = 0
            px = qn
            u = rng.random()
        else:
            u -= px
            px = ((n - x + 1) * p * px) / (x * q)
    return x


@nb.njit(cache=True)
def _stirling_tail(x: float) -> float:
    """The Stirling series term BTPE's final test adds per factorial: (13860 - (462 - (132 -
    (99 - 140 / x^2) / x^2) / x^2) / x^2) / x / 166320 (Kachitvichyanukul & Schmeiser, step 5.3)."""
    x2 = x * x
    return (13860.0 - (462.0 - (132.0 - (99.0 - 140.0 / x2) / x2) / x2) / x2) / x / 166320.0


@nb.njit(cache=True)
def _btpe(rng: np.random.Generator, n: int, p: float) -> int:
    """Binomial(n, p) for p <= 1/2 and n p > 30: BTPE (Kachitvichyanukul & Schmeiser 1988), a
    triangle, two parallelograms and two exponential tails around the mode, with the squeeze and
    the Stirling-approximated ratio of factorials as acceptance tests."""
    q = 1.0 - p
    fm = n * p + p
    m = math.floor(fm)
    npq = n * p * q
    p1 = math.floor(2.195 * math.sqrt(npq) - 4.6 * q) + 0.5
    xm = m + 0.5
    xl = xm - p1
    xr = xm + p1
    c = 0.134 + 20.5 / (15.3 + m)
    a = (fm - xl) / (fm - xl * p)
    lam_l = a * (1.0 + 0.5 * a)
    a = (xr - fm) / (xr * q)
    lam_r = a * (1.0 + 0.5 * a)
    p2 = p1 * (1.0 + 2.0 * c)
    p3 = p2 + c / lam_l
    p4 = p3 + c / lam_r
    while True:
        u = rng.random() * p4
        v = rng.random()
        if u <= p1:  # triangle: accepted at once
            return int(math.floor(xm - p1 * v + u))
        if u <= p2:  # parallelograms
            x = xl + (u - p1) / c
            v = v * c + 1.0 - abs(m - x + 0.5) / p1
            if v > 1.0:
                continue
            y = math.floor(x)
        elif u <= p3:  # left exponential tail
            y = math.floor(xl + log(v) / lam_l)
            if y < 0.0:
                continue
            v = v * (u - p2) * lam_l
        else:  # right exponential tail
            y = math.floor(xr - log(v) / lam_r)
            if y > n:
                continue
            v = v * (u - p3) * lam_r
        k = abs(y - m)
        if k <= 20.0 or k >= 0.5 * npq - 1.0:
            # f(y) / f(m) by the recursion f(i) / f(i - 1) = (n + 1) p / (i q) - p / q
            s = p / q
            aa = s * (n + 1.0)
            f = 1.0
            if m < y:
                i = m + 1.0
                while i <= y:
                    f = f * (aa / i - s)
                    i += 1.0
            elif m > y:
                i = y + 1.0
                while i <= m:
                    f = f / (aa / i - s)
                    i += 1.0
            if v <= f:
                return int(y)
            continue
        # squeeze on log(v) around the normal approximation of log(f(y) / f(m))
        rho = (k / npq) * ((k * (k / 3.0 + 0.625) + 0.16666666666666666) / npq + 0.5)
        t = -k * k / (2.0 * npq)
        av = log(v)
        if av < t - rho:
            return int(y)
        if av > t + rho:
            continue
        x1 = y + 1.0
        f1 = m + 1.0
        z = n + 1.0 - m
        w = n - y + 1.0
        bound = (xm * log(f1 / x1) + (n - m + 0.5) * log(z / w) + (y - m) * log(w * p / (x1 * q))
                 + _stirling_tail(f1) + _stirling_tail(z) + _stirling_tail(x1) + _stirling_tail(w))
        if av <= bound:
            return int(y)


@nb.njit(cache=True)
def binomial(rng: np.random.Generator, n: int, p: float) -> int:
    """Binomial(n, p) draw (n >= 0, 0 <= p <= 1): inversion when min(p, 1 - p) n <= 30, else
    BTPE, on min(p, 1 - p) (numpy's choice of method). BTPE's Stirling term uses the paper's
    13860 (1/12 of 166320); numpy's C source has 13680, a transposition that moves its final test.

    Raises:
        ValueError: p is nan (BTPE would reject every candidate and never return).
    """
    if p != p:
        raise ValueError("traces.portable.binomial: p is nan (expected 0 <= p <= 1)")
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p <= 0.5:
        return _inversion(rng, n, p) if p * n <= 30.0 else _btpe(rng, n, p)
    q = 1.0 - p
    return n - (_inversion(rng, n, q) if q * n <= 30.0 else _btpe(rng, n, q))


@nb.njit(cache=True)
def multinomial_row(rng: np.random.Generator, n: int, p: np.ndarray, out: np.ndarray) -> None:
    """Adds a multinomial draw of n over probabilities ``p`` [d] (summing to 1) to ``out`` [d]:
    one conditional binomial per category in order, stopping when nothing is left (numpy's
    ``random_multinomial``), the last category taking the rest."""
    d = p.shape[0]
    remaining_p = 1.0
    dn = n
    for j in range(d - 1):
        x = binomial(rng, dn, min(1.0, p[j] / remaining_p))
        out[j] += x
        dn -= x
        if dn <= 0:
            break
        remaining_p -= p[j]
    if dn > 0:
        out[d - 1] += dn


@nb.njit(cache=True)
def fill_standard_normal(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fills ``out`` (any shape, C-contiguous) with standard normals in C order: Marsaglia's polar
    method, two values per accepted point of the unit disc (the last one dropped for odd sizes)."""
    flat = out.reshape(-1)
    size = flat.shape[0]
    i = 0
    while i < size:
        x1 = 2.0 * rng.random() - 1.0
        x2 = 2.0 * rng.random() - 1.0
        r2 = x1 * x1 + x2 * x2
        if r2 >= 1.0 or r2 == 0.0:
            continue
        f = math.sqrt(-2.0 * log(r2) / r2)
        flat[i] = f * x1
        if i + 1 < size:
            flat[i + 1] = f * x2
        i += 2


@nb.njit(cache=True)
def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """A uniformly random permutation of 0..n-1, int64 [n] (Fisher-Yates from the last index)."""
    out = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        t = out[i]
        out[i] = out[j]
        out[j] = t
    return out
