"""Vectorisable transcendental functions over flat arrays.

numba lowers ``math.exp``/``math.tanh``/``math.erf`` to scalar libm calls (no SVML here), at
7-35 ns per element; LLVM cannot vectorise loops containing them. For float32 arrays these
helpers use branch-free polynomial/rational forms that LLVM turns into SIMD code (~1-2 ns per
element), accurate to a few float32 ulps (tests/kernels/test_vmath.py checks the bounds).
float64 arrays keep libm: float64 is what the gradient checks run in, and there accuracy is
the point.

Work is done in blocks of ``_BLOCK`` elements with small scratch buffers, so temporaries stay
in L1 and no array-sized scratch is allocated. ``error_model="numpy"``: numba's default
Python error model checks every float division for zero, and that branch alone stops LLVM
from vectorising a loop; the divisors here are never zero.

All functions take a flat input ``x`` and write the flat output ``out`` (same length). ``x``
and ``out`` must not be the same memory: with aliased operands LLVM's runtime overlap check
sends the loops to their scalar fallback, 5x slower.
"""

import math

import numba
import numpy as np

_BLOCK = 1024
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # few mantissa bits: k * _LN2_HI is exact for the k that occur
_LN2_LO = -2.1219444005469057e-04
_EXP_LO = -87.3  # below this float32 exp underflows; return exactly 0
_EXP_HI = 88.7  # clamp: exp(88.7) is still finite in float32
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@numba.njit(cache=True, error_model="numpy")
def _exp_block(src, m, dst, dst_bits, k):
    """dst[:m] = exp(src[:m]) into a float32 block (src float32, or float64 where the argument
    itself must not be rounded); dst_bits is dst viewed as int32."""
    for i in range(m):
        v = min(max(float(src[i]), _EXP_LO), _EXP_HI)
        kf = np.floor(v * _LOG2E + 0.5)
        r = (v - kf * _LN2_HI) - kf * _LN2_LO  # |r| <= ln2/2
        # Taylor to degree 7 on |r| <= 0.347: truncation < 5e-9 relative
        p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
            1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040)))))))  # fmt: skip
        under = src[i] < _EXP_LO
        dst[i] = 0.0 if under else p
        k[i] = 0 if under else np.int32(kf)
    # multiply by 2**k by adding k to the float32 exponent field
    for i in range(m):
        dst_bits[i] += k[i] << 23


@numba.njit(cache=True, error_model="numpy")
def vexp(x, out):
    n = x.size
    if x.itemsize != 4:
        for i in range(n):
            out[i] = math.exp(x[i])
        return
    src = np.empty(_BLOCK, dtype=np.float32)
    dst = np.empty(_BLOCK, dtype=np.float32)
    dst_bits = dst.view(np.int32)
    k = np.empty(_BLOCK, dtype=np.int32)
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        for i in range(m):
            src[i] = x[lo + i]
        _exp_block(src, m, dst, dst_bits, k)
        for i in range(m):
            out[lo + i] = dst[i]


@numba.njit(cache=True, error_model="numpy")
def vsigmoid(x, out):
    n = x.size
    if x.itemsize != 4:
        for i in range(n):
            v = x[i]
            if v >= 0:
                out[i] = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                out[i] = e / (1.0 + e)
        return
    # 1 / (1 + exp(-x)); exp is clamped, so no overflow for very negative x
    src = np.empty(_BLOCK, dtype=np.float32)
    dst = np.empty(_BLOCK, dtype=np.float32)
    dst_bits = dst.view(np.int32)
    k = np.empty(_BLOCK, dtype=np.int32)
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        for i in range(m):
            src[i] = -x[lo + i]
        _exp_block(src, m, dst, dst_bits, k)
        for i in range(m):
            out[lo + i] = 1.0 / (1.0 + dst[i])


@numba.njit(cache=True, error_model="numpy")
def vtanh(x, out):
    n = x.size
    if x.itemsize != 4:
        for i in range(n):
            out[i] = math.tanh(x[i])
        return
    # tanh(x) = 1 - 2 / (exp(2x) + 1), which loses relative accuracy near 0: there use the
    # odd Taylor series (error < 3e-10 for |x| < 0.125).
    src = np.empty(_BLOCK, dtype=np.float32)
    dst = np.empty(_BLOCK, dtype=np.float32)
    dst_bits = dst.view(np.int32)
    k = np.empty(_BLOCK, dtype=np.int32)
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        for i in range(m):
            src[i] = 2.0 * x[lo + i]
        _exp_block(src, m, dst, dst_bits, k)
        for i in range(m):
            v = float(x[lo + i])
            v2 = v * v
            small = v * (1.0 - v2 * (1.0 / 3 - v2 * (2.0 / 15 - v2 * (17.0 / 315))))
            big = 1.0 - 2.0 / (dst[i] + 1.0)
            out[lo + i] = small if abs(v) < 0.125 else big


@numba.njit(cache=True, error_model="numpy")
def _cdf_block(xb, m, arg, tb, dst, dst_bits, k):
    """dst[:m] = Phi(xb[:m]) for float32 blocks (arg, tb: float64 scratch blocks).

    Uses erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)), t = 1 / (1 + z/2) (Numerical Recipes'
    erfcc, fractional error < 1.2e-7 everywhere), so the far negative tail keeps its relative
    accuracy. The exp argument is kept in float64: rounding -z^2 to float32 would alone cost
    ~1e-6 relative error in the tail.
    """
    for i in range(m):
        z = abs(float(xb[i])) * _INV_SQRT2
        t = 1.0 / (1.0 + 0.5 * z)
        tb[i] = t
        arg[i] = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
            0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
                1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))  # fmt: skip
    _exp_block(arg, m, dst, dst_bits, k)
    for i in range(m):
        half_erfc = 0.5 * tb[i] * dst[i]
        dst[i] = half_erfc if xb[i] < 0 else 1.0 - half_erfc


@numba.njit(cache=True, error_model="numpy")
def vnormal_cdf(x, out):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the GELU gate."""
    n = x.size
    if x.itemsize != 4:
        for i in range(n):
            out[i] = 0.5 * (1.0 + math.erf(x[i] * _INV_SQRT2))
        return
    xb = np.empty(_BLOCK, dtype=np.float32)
    arg = np.empty(_BLOCK, dtype=np.float64)
    tb = np.empty(_BLOCK, dtype=np.float64)
    dst = np.empty(_BLOCK, dtype=np.float32)
    dst_bits = dst.view(np.int32)
    k = np.empty(_BLOCK, dtype=np.int32)
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        for i in range(m):
            xb[i] = x[lo + i]
        _cdf_block(xb, m, arg, tb, dst, dst_bits, k)
        for i in range(m):
            out[lo + i] = dst[i]
