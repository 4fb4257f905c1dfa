"""Vectorisable transcendental functions over flat arrays.

numba lowers ``math.exp``/``math.tanh``/``math.erf`` to scalar libm calls (no SVML here), at
7-35 ns per element; LLVM cannot vectorise loops containing them. For float32 arrays these
helpers use branch-free polynomial/rational forms that LLVM turns into SIMD code, accurate to
a few float32 ulps (tests/kernels check the error bounds). float64 arrays keep libm, since
float64 is what the gradient checks run in and its accuracy is the point there.

``error_model="numpy"``: a Python-style float division raises on zero, and that check alone
stops LLVM from vectorising a loop; the divisors here are never zero.

All functions take a flat input ``x`` and write the flat output ``out``; ``x`` and ``out``
must not be the same memory: with aliased operands LLVM's runtime overlap check sends the loop
to its scalar fallback, 5x slower.
"""

import math

import numba
import numpy as np

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # few mantissa bits: k * _LN2_HI is exact for the k that occur
_LN2_LO = -2.1219444005469057e-04
_EXP_LO = -87.3  # below this float32 exp underflows; return exactly 0
_EXP_HI = 88.7  # clamp: exp(88.7) is still finite in float32
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@numba.njit(cache=True, error_model="numpy")
def _exp_f32(x, out):
    n = x.size
    k = np.empty(n, dtype=np.int32)
    for i in range(n):
        v = min(max(float(x[i]), _EXP_LO), _EXP_HI)
        kf = np.floor(v * _LOG2E + 0.5)
        r = (v - kf * _LN2_HI) - kf * _LN2_LO  # |r| <= ln2/2
        # Taylor to degree 7 on |r| <= 0.347: truncation < 5e-9 relative
        p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (
            1.0 / 120 + r * (1.0 / 720 + r * (1.0 / 5040)))))))  # fmt: skip
        under = x[i] < _EXP_LO
        out[i] = 0.0 if under else p
        k[i] = 0 if under else np.int32(kf)
    # multiply by 2**k by adding k to the float32 exponent field
    bits = out.view(np.int32)
    for i in range(n):
        bits[i] += k[i] << 23


@numba.njit(cache=True, error_model="numpy")
def vexp(x, out):
    if x.itemsize == 4:
        _exp_f32(x, out)
    else:
        for i in range(x.size):
            out[i] = math.exp(x[i])


@numba.njit(cache=True, error_model="numpy")
def vsigmoid(x, out):
    if x.itemsize == 4:
        # 1 / (1 + exp(-x)); exp is clamped, so no overflow for very negative x
        tmp = np.empty(x.size, dtype=np.float32)
        for i in range(x.size):
            tmp[i] = -x[i]
        _exp_f32(tmp, out)
        for i in range(x.size):
            out[i] = 1.0 / (1.0 + out[i])
    else:
        for i in range(x.size):
            v = x[i]
            if v >= 0:
                out[i] = 1.0 / (1.0 + math.exp(-v))
            else:
                e = math.exp(v)
                out[i] = e / (1.0 + e)


@numba.njit(cache=True, error_model="numpy")
def vtanh(x, out):
    if x.itemsize == 4:
        # tanh(x) = 1 - 2 / (exp(2x) + 1), which loses relative accuracy near 0: there use
        # the odd Taylor series (error < 3e-10 for |x| < 0.125).
        tmp = np.empty(x.size, dtype=np.float32)
        e2x = np.empty(x.size, dtype=np.float32)
        for i in range(x.size):
            tmp[i] = 2.0 * x[i]
        _exp_f32(tmp, e2x)
        for i in range(x.size):
            v = float(x[i])
            v2 = v * v
            small = v * (1.0 - v2 * (1.0 / 3 - v2 * (2.0 / 15 - v2 * (17.0 / 315))))
            big = 1.0 - 2.0 / (e2x[i] + 1.0)
            out[i] = small if abs(v) < 0.125 else big
    else:
        for i in range(x.size):
            out[i] = math.tanh(x[i])


@numba.njit(cache=True, error_model="numpy")
def vnormal_cdf(x, out):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the GELU gate."""
    if x.itemsize == 4:
        # Abramowitz & Stegun 7.1.26 for erf(|z|) (abs error < 1.5e-7), odd extension.
        tmp = np.empty(x.size, dtype=np.float32)
        ez = np.empty(x.size, dtype=np.float32)
        for i in range(x.size):
            z = x[i] * _INV_SQRT2
            tmp[i] = -z * z
        _exp_f32(tmp, ez)
        for i in range(x.size):
            z = abs(float(x[i])) * _INV_SQRT2
            t = 1.0 / (1.0 + 0.3275911 * z)
            poly = t * (0.254829592 + t * (-0.284496736 + t * (
                1.421413741 + t * (-1.453152027 + t * 1.061405429))))  # fmt: skip
            e = 1.0 - poly * ez[i]
            out[i] = 0.5 * (1.0 + e) if x[i] >= 0 else 0.5 * (1.0 - e)
    else:
        for i in range(x.size):
            out[i] = 0.5 * (1.0 + math.erf(x[i] * _INV_SQRT2))
