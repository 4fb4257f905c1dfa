"""Activation kernels beyond the basic four: clamp, relu6, hardswish and silu (swish).

Same conventions as graphc.kernels.elementwise: flat loops so the result dtype follows the
input, sigmoid through graphc.kernels.vmath (SIMD float32, libm float64). Gradients at the
bounds follow PyTorch: clamp passes the gradient where lo <= x <= hi (inclusive), relu6
(hardtanh) only where 0 < x < 6, hardswish uses (2x + 3) / 6 on [-3, 3].
"""

import numba
import numpy as np

from graphc.kernels.vmath import vsigmoid


@numba.njit(cache=True)
def clamp_fwd(x, lo, hi, out=None):
    if out is None:
        out = np.empty_like(x)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        v = xf[i]
        of[i] = lo if v < lo else (hi if v > hi else v)
    return (out,)


@numba.njit(cache=True)
def clamp_bwd(g_out, x, lo, hi, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    gf = g_out.reshape(-1)
    xf = x.reshape(-1)
    gxf = into_x.reshape(-1)
    for i in range(xf.size):
        gxf[i] = gf[i] if lo <= xf[i] <= hi else 0
    return (into_x,)


@numba.njit(cache=True)
def relu6_fwd(x, out=None):
    if out is None:
        out = np.empty_like(x)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        v = xf[i]
        of[i] = 0 if v < 0 else (6 if v > 6 else v)
    return (out,)


@numba.njit(cache=True)
def relu6_bwd(g_out, x, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    gf = g_out.reshape(-1)
    xf = x.reshape(-1)
    gxf = into_x.reshape(-1)
    for i in range(xf.size):
        gxf[i] = gf[i] if 0 < xf[i] < 6 else 0
    return (into_x,)


@numba.njit(cache=True)
def hardswish_fwd(x, out=None):
    # x · relu6(x + 3) / 6
    if out is None:
        out = np.empty_like(x)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        v = xf[i]
        if v <= -3:
            of[i] = 0
        elif v >= 3:
            of[i] = v
        else:
            of[i] = v * (v + 3) / 6
    return (out,)


@numba.njit(cache=True)
def hardswish_bwd(g_out, x, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    gf = g_out.reshape(-1)
    xf = x.reshape(-1)
    gxf = into_x.reshape(-1)
    for i in range(xf.size):
        v = xf[i]
        if v < -3:
            gxf[i] = 0
        elif v <= 3:
            gxf[i] = gf[i] * (2 * v + 3) / 6
        else:
            gxf[i] = gf[i]
    return (into_x,)


@numba.njit(cache=True)
def silu_fwd(x, out=None):
    # x · σ(x); saves σ(x), so the backward σ(1 + x(1 - σ)) needs no exp.
    if out is None:
        out = np.empty_like(x)
    sig = np.empty_like(x)
    vsigmoid(x.reshape(-1), sig.reshape(-1))
    xf = x.reshape(-1)
    sf = sig.reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        of[i] = xf[i] * sf[i]
    return out, sig


@numba.njit(cache=True)
def silu_bwd(g_out, x, saved0, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    gf = g_out.reshape(-1)
    xf = x.reshape(-1)
    sf = saved0.reshape(-1)
    gxf = into_x.reshape(-1)
    for i in range(xf.size):
        s = sf[i]
        gxf[i] = gf[i] * s * (1 + xf[i] * (1 - s))
    return (into_x,)
