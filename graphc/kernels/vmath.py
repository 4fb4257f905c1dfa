"""Vectorisable transcendental functions over flat arrays.

numba lowers ``math.exp``/``math.tanh``/``math.erf`` to scalar libm calls (no SVML here), at
7-35 ns per element; LLVM cannot vectorise loops containing them. For float32 arrays these
helpers use branch-free polynomial forms evaluated entirely in float32, which LLVM turns into
full-width SIMD code (8 lanes of AVX2/AVX-512 ymm here, 0.3-1.2 ns per element), accurate to
about one float32 ulp (tests/kernels/test_vmath.py checks the bounds). float64 arrays keep
libm: float64 is what the gradient checks run in, and there accuracy is the point.

float32 discipline: every constant the float32 code touches is a module-level ``np.float32``
(a Python float or an int literal would promote the arithmetic to float64 and halve the SIMD
width), 2**k is built by bit manipulation (``_pow2_of_magic``), and the scalar cores are
inlined into one fused loop per function, without scratch buffers. The loops are compiled
with ``fastmath={"contract"}``: it only lets LLVM fuse a*b + c into one FMA (a single
rounding; NaN/Inf semantics are untouched), which speeds up the polynomials. Where an error
term must be exact (``1 - t*d`` with t = fl(1/d), the rounding error of a product), ``_fma``
calls llvm.fma explicitly rather than trusting contraction. NaN inputs give NaN.

``error_model="numpy"``: numba's default Python error model checks every float division for
zero, and that branch alone stops LLVM from vectorising a loop; the divisors here are never
zero.

All functions take a flat input ``x`` and write the flat output ``out`` (same length). ``x``
and ``out`` must not be the same memory: with aliased operands LLVM's runtime overlap check
sends the loops to their scalar fallback, several times slower.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_F32 = np.float32


def _f32_at_least(v: float) -> np.float32:
    """The smallest float32 >= v, so ``f32 < it`` means exactly ``f32 < v``."""
    f = _F32(v)
    return f if float(f) >= v else np.nextafter(f, _F32(np.inf))


_EXP_LO = -87.3  # exp(x) is exactly 0 below this (masked softmax relies on it)
_EXP_HI = 88.3  # clamp: exp(88.3) is finite in float32 and 2**k stays a normal number
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

_ZERO = _F32(0.0)
_M_ZERO = _F32(-0.0)  # x + -0.0 == x, so LLVM drops the add (x + 0.0 it cannot)
_ONE = _F32(1.0)
_M_HALF = _F32(-0.5)
_M_TWO = _F32(-2.0)
_LO32 = _f32_at_least(_EXP_LO)
_HI32 = _F32(_EXP_HI)
_CLAMP_LO32 = _F32(-88.0)  # exp's argument is clamped here (then zeroed: below _LO32)
_LOG2E32 = _F32(1.4426950408889634)
# kq = x log2(e) + _MAGIC rounds to an integer k (the float32 spacing at 1.5 * 2**23 is 1)
# and keeps k + 127, the biased exponent of 2**k, in the low mantissa bits of kq.
_MAGIC = _F32(1.5 * 2**23 + 127)
_LN2_HI32 = _F32(0.693359375)  # 9 significant bits: k * _LN2_HI32 is exact for |k| < 2**15
_LN2_LO32 = _F32(math.log(2.0) - 0.693359375)
_INV_SQRT_2PI32 = _F32(_INV_SQRT_2PI)

# exp(r) = 1 + r + r^2 P(r) on |r| <= 0.3486, minimax for the relative error of exp
# (3.3e-9 with these float32 coefficients).
_E2 = _F32(0.4999999403953552)
_E3 = _F32(0.1666651964187622)
_E4 = _F32(0.04166829213500023)
_E5 = _F32(0.008368907496333122)
_E6 = _F32(0.0013819169253110886)
# expm1(r) = r + r^2 Q(r) on |r| <= 0.3486, minimax for the relative error of expm1 (1.4e-8).
_M2 = _F32(0.4999999701976776)
_M3 = _F32(0.1666654348373413)
_M4 = _F32(0.041667431592941284)
_M5 = _F32(0.008366651833057404)
_M6 = _F32(0.0013871502596884966)
_TANH_Y_MIN = _F32(-20.0)  # expm1(-20) is -1 in float32; keeps 2**k normal

# Normal CDF centre: Phi(x) = 1/2 + x S(x^2) on |x| < 0.7, minimax for the relative error of
# x S (2.9e-8, almost all of it from rounding 1/sqrt(2 pi) to float32: an absolute error
# below 1e-8).
_HALF = _F32(0.5)
_A_CENTRE = _F32(0.7)
_S0 = _F32(0.3989422917366028)
_S1 = _F32(-0.06649107486009598)
_S2 = _F32(0.009980181232094765)
_S3 = _F32(-0.0012066138442605734)
_S4 = _F32(0.00012862146832048893)
# Normal CDF tail: Phi(-a) = exp(-a^2/2) G(a), G(a) = erfcx(a / sqrt 2) / 2 (a >= 0.7), with
# G(a) = t P(t), t = 1 / (1 + a/4), P a polynomial in z = t - 139/256: minimax for the
# relative error on 0.68 <= a <= 13.5 (6.3e-9 with these float32 coefficients). Beyond 13.5,
# Phi(-a) < 1e-40 and a is clamped.
_P_T = _F32(0.25)
_INV_P_T = _F32(4.0)
_C_INV_P_T = _F32(4.0 * _INV_SQRT_2PI)  # G'(a) / p = (a G(a) - 1/sqrt(2 pi)) / p
_A_MAX = _F32(13.5)
_T_C = _F32(139 / 256)
_G0 = _F32(0.2026267647743225)
_G1 = _F32(0.33936184644699097)
_G2 = _F32(0.4379466474056244)
_G3 = _F32(0.4155864417552948)
_G4 = _F32(0.252834677696228)
_G5 = _F32(0.043947309255599976)
_G6 = _F32(-0.07020986080169678)
_G7 = _F32(-0.04638327285647392)
_G8 = _F32(0.01587500423192978)
_G9 = _F32(0.020694496110081673)

# Scalar float32 cores are inlined into their loops at numba IR level (LLVM's inliner gives up
# on the larger ones, and a call per element cannot be vectorised); the loops carry the flags.
_F32_CORE = dict(inline="always", error_model="numpy", fastmath={"contract"})
_F32_LOOP = dict(cache=True, error_model="numpy", fastmath={"contract"})


# --------------------------------------------------------------------------- bit tricks
@intrinsic
def _pow2_of_magic(typingctx, kq):
    """2**k from kq = float32(1.5 * 2**23 + 127 + k), -126 <= k <= 127: the low mantissa bits
    of kq hold k + 127; shifted by 23 they are the exponent field of 2**k (and nothing else)."""
    if kq != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.bitcast(args[0], i32), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with a single rounding (llvm.fma: one instruction on x86-64 with FMA3 and on
    aarch64). Used where an error term must be exact; elsewhere contraction decides."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fnty = ir.FunctionType(f32, [f32, f32, f32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


# --------------------------------------------------------------------------- float32 cores
@numba.njit(**_F32_CORE)
def _exp_reduce(hi, lo):
    """exp(hi + lo) = exp(r) 2**k: returns (r, kq), |r| <~ ln2/2, kq as for _pow2_of_magic.

    hi must lie in [-88, 88.3]; lo is at most half an ulp of hi: the rounding error of an
    argument that float32 cannot hold in one number (k comes from hi alone). hi - k ln2_hi
    is exact (both are on a grid of at most 2**24 steps below 0.5), so r carries only
    ulp(r)-sized errors.
    """
    kq = hi * _LOG2E32 + _MAGIC  # rounds hi log2(e) to an integer k
    kf = kq - _MAGIC
    r = hi - kf * _LN2_HI32
    r = (r + lo) - kf * _LN2_LO32
    return r, kq


@numba.njit(**_F32_CORE)
def _exp_parts(hi, lo):
    """(q, s) with exp(hi + lo) = (1 + q) s, s = 2**k (s = 0 where hi < -87.3).

    Kept apart so callers can fold 1 + q into their next multiply-add (one rounding less)."""
    r, kq = _exp_reduce(hi, lo)
    q = r + r * r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * _E6))))
    s = _pow2_of_magic(kq)
    s = _ZERO if hi < _LO32 else s
    return q, s


@numba.njit(**_F32_CORE)
def _exp32(v):
    v = _HI32 if v > _HI32 else v  # comparisons written so that NaN passes through
    v = _CLAMP_LO32 if v < _CLAMP_LO32 else v
    q, s = _exp_parts(v, _M_ZERO)
    return s + s * q


@numba.njit(**_F32_CORE)
def _recip_sum(c, sq, c_err):
    """1 / (c + sq + c_err) rounded once: c + sq is split exactly into dh + dl (|c| >= |sq|,
    Fast2Sum), and the reciprocal of dh gets one Newton correction for dl and for its own
    rounding."""
    dh = c + sq
    dl = ((c - dh) + sq) + c_err
    r0 = _ONE / dh
    e1 = _fma(-r0, dh, _ONE)  # exact
    return r0 + r0 * (e1 - r0 * dl)


@numba.njit(**_F32_CORE)
def _sigmoid32(v):
    # 1 / (1 + exp(-v)) = 1 / ((1 + s) + s q) with exp(-v) = s (1 + q), s = 2**k. s q is
    # exact; 1 + s is exact for |k| < 24 and otherwise off by c_err (exactly), so the
    # denominator is known exactly and the result rounds once (plus exp's own ~2e-8).
    w = -v
    w = _HI32 if w > _HI32 else w  # comparisons written so that NaN passes through
    w = _CLAMP_LO32 if w < _CLAMP_LO32 else w
    q, s = _exp_parts(w, _M_ZERO)
    c = _ONE + s
    c_err = (s - c) + _ONE
    return _recip_sum(c, s * q, c_err)


@numba.njit(**_F32_CORE)
def _tanh32(v):
    # tanh|v| = (1 - E) / (1 + E), E = exp(-2|v|) = s (1 + q) with q = expm1(r), s = 2**k,
    # k <= 0. s q is exact and 1 -/+ s are exact while they matter, so numerator and
    # denominator are split exactly into hi + lo parts (Fast2Sum) and the quotient, corrected
    # once for the lo parts and its own rounding, rounds once. Near 0, k = 0 and the
    # numerator is -q = -expm1(-2|v|) itself: no cancellation.
    y = _M_TWO * abs(v)
    y = _TANH_Y_MIN if y < _TANH_Y_MIN else y  # NaN passes through
    r, kq = _exp_reduce(y, _M_ZERO)
    q = r + r * r * (_M2 + r * (_M3 + r * (_M4 + r * (_M5 + r * _M6))))  # expm1(r)
    s = _pow2_of_magic(kq)
    sq = s * q
    cn = _ONE - s
    nh = cn - sq
    nl = (cn - nh) - sq
    cd = _ONE + s
    dh = cd + sq
    dl = (cd - dh) + sq
    rd = _ONE / dh
    q0 = nh * rd
    rho = _fma(-q0, dh, nh)  # exact up to ~2**-24 of itself
    return math.copysign(q0 + ((rho + nl) - q0 * dl) * rd, v)


@numba.njit(**_F32_CORE)
def _cdf32(x):
    """(Phi(x), exp(-x^2/2)) for float32 x, with relative accuracy in the lower tail.

    |x| < 0.7: Phi(x) = 1/2 + x S(x^2), S a polynomial. Otherwise Phi(-a) = exp(-a^2/2) G(a)
    for a = |x|, and Phi(x) = 1 - Phi(-x) for x >= 0. Three float32 pitfalls are handled:
    - the exp argument -a^2/2 (up to -91) would lose ~1e-5 relative accuracy if rounded to
      float32: it is split exactly into hi + lo, hi = fl(-a^2/2) and lo its rounding error
      (an FMA), and _exp_reduce takes the two parts.
    - t = fl(1 / fl(1 + a/4)) carries up to 2 roundings, which would move a by up to
      2**-23 (4 + a) and Phi(-a) by up to ~1.2e-7 relative. t represents exactly some
      a'' != a; the difference a - a'' = (dl - d e1) / p follows from the exact error terms
      dl of the sum and e1 of the division, and G(a) = G(a'') + G'(a) (a - a'') with
      G'(a) = a G(a) - 1/sqrt(2 pi).
    - float32 evaluation error of G: P's last step G0 + z w1 and the product u = t P are
      compensated (their exact rounding errors go into w with the correction above), and
      G exp(-a^2/2) = (u + w) (1 + q) s is summed as u + (u q + (w + w q)), so that only the
      last addition rounds at full size (s is a power of 2).
    """
    a = abs(x)
    a = _A_MAX if a > _A_MAX else a  # NaN passes through
    # tail: G(a) ~= t P(t), t = 1 / (1 + a/4), corrected for the roundings of t
    d = a * _P_T + _ONE
    t = _ONE / d
    dl = a * _P_T + (_ONE - d)  # exactly (1 + a/4) - d
    e1 = _fma(-t, d, _ONE)  # exact
    dd = dl - d * e1  # p (a - a'')
    z = t - _T_C  # exact while t >= 1/4 (a <= 12)
    # Estrin's scheme (a shorter dependency chain than Horner's; as accurate for |z| < 0.32)
    z2 = z * z
    z4 = z2 * z2
    w1 = ((_G1 + z * _G2) + z2 * (_G3 + z * _G4)) + z4 * (
        ((_G5 + z * _G6) + z2 * (_G7 + z * _G8)) + z4 * _G9)  # fmt: skip
    m1 = z * w1
    pv = _G0 + m1
    pe = ((_G0 - pv) + m1) + _fma(z, w1, -m1)  # exactly G0 + z w1 - pv (|m1| < G0)
    u = t * pv
    w = _fma(t, pv, -u) + t * pe + (a * _INV_P_T * u - _C_INV_P_T) * dd  # fma: exact
    # exp(-a^2/2) = (1 + q) s
    na = _M_HALF * a  # exact
    hi = na * a
    lo = _fma(na, a, -hi)  # exactly the rounding error of hi
    q, s = _exp_parts(hi, lo)
    h = (u + (u * q + (w + w * q))) * s  # Phi(-a)
    tail = h if x < _ZERO else _ONE - h
    # centre: Phi(x) = 1/2 + x S(x^2)
    x2 = x * x
    centre = _HALF + x * (_S0 + x2 * (_S1 + x2 * (_S2 + x2 * (_S3 + x2 * _S4))))
    return (centre if a < _A_CENTRE else tail), s + s * q


# --------------------------------------------------------------------------- array loops
# The float32 loop of each function is compiled for float64 arrays too (never run there).
@numba.njit(**_F32_LOOP)
def _vexp32(x, out):
    for i in range(x.size):
        out[i] = _exp32(_F32(x[i]))


@numba.njit(**_F32_LOOP)
def _vsigmoid32(x, out):
    for i in range(x.size):
        out[i] = _sigmoid32(_F32(x[i]))


@numba.njit(**_F32_LOOP)
def _vtanh32(x, out):
    for i in range(x.size):
        out[i] = _tanh32(_F32(x[i]))


@numba.njit(**_F32_LOOP)
def _vnormal_cdf32(x, out):
    for i in range(x.size):
        out[i] = _cdf32(_F32(x[i]))[0]


@numba.njit(**_F32_LOOP)
def _vgelu32(x, out, grad):
    for i in range(x.size):
        v = _F32(x[i])
        cdf, e = _cdf32(v)
        out[i] = v * cdf
        grad[i] = cdf + v * (e * _INV_SQRT_2PI32)


@numba.njit(cache=True, error_model="numpy")
def vexp(x, out):
    if x.itemsize == 4:
        _vexp32(x, out)
        return
    for i in range(x.size):
        out[i] = math.exp(x[i])


@numba.njit(cache=True, error_model="numpy")
def vsigmoid(x, out):
    if x.itemsize == 4:
        _vsigmoid32(x, out)
        return
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
        _vtanh32(x, out)
        return
    for i in range(x.size):
        out[i] = math.tanh(x[i])


@numba.njit(cache=True, error_model="numpy")
def vnormal_cdf(x, out):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the GELU gate."""
    if x.itemsize == 4:
        _vnormal_cdf32(x, out)
        return
    for i in range(x.size):
        out[i] = 0.5 * (1.0 + math.erf(x[i] * _INV_SQRT2))


@numba.njit(cache=True, error_model="numpy")
def vgelu(x, out, grad):
    """out = x Phi(x) (the exact GELU) and grad = d out / dx = Phi(x) + x phi(x)."""
    if x.itemsize == 4:
        _vgelu32(x, out, grad)
        return
    for i in range(x.size):
        v = x[i]
        cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
        out[i] = v * cdf
        grad[i] = cdf + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v)
