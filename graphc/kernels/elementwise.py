"""Elementwise kernels that are not pointwise rules: the softmax family, dropout, and
``unbroadcast`` (matmul's backward sums its broadcast axes with it).

Convention (shared by every module in ``graphc.kernels``): ``<op>_fwd(**inputs, **params,
**attrs)`` returns ``(outputs..., saved...)``; ``<op>_bwd(g_<output>..., **inputs, **params,
**attrs, saved0.., <output>..)`` returns one gradient per input port, then one per param.
Kernels loop over the flat array so the result dtype always follows the input (a float
literal in a vectorised numba expression could silently promote float32 to float64); exp goes
through ``graphc.kernels.vmath`` (SIMD float32 forms, libm float64).

add, sub, mul, relu, gelu, tanh, sigmoid and the other ops with a pointwise rule have no
hand-written kernels: theirs are generated from the rule (graphc.kernels.pointwise), the
same code every fused group of them gets (graphc.compiler.fuse).
"""

import math

import numba
import numpy as np

from graphc.kernels.vmath import vexp


# --------------------------------------------------------------------------- softmax family
@numba.njit(cache=True)
def _shift_rows(x2):
    """x - rowmax(x) as a new array: the stable argument of exp."""
    n, c = x2.shape
    sh = np.empty_like(x2)
    for r in range(n):
        m = x2[r, 0]
        for j in range(1, c):
            m = max(m, x2[r, j])
        for j in range(c):
            sh[r, j] = x2[r, j] - m
    return sh


@numba.njit(cache=True)
def softmax_fwd(x, out=None):
    # Over the last axis; the driver moves other axes last before calling.
    c = x.shape[-1]
    sh = _shift_rows(x.reshape(-1, c))
    if out is None:
        out = np.empty_like(x)
    o2 = out.reshape(-1, c)
    vexp(sh.reshape(-1), out.reshape(-1))
    for r in range(o2.shape[0]):
        s = 0.0
        for j in range(c):
            s += o2[r, j]
        inv = 1.0 / s
        for j in range(c):
            o2[r, j] *= inv
    return (out,)


@numba.njit(cache=True)
def softmax_bwd(g_out, x, out, into_x=None):
    c = x.shape[-1]
    g2 = g_out.reshape(-1, c)
    o2 = out.reshape(-1, c)
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    gx2 = gx.reshape(-1, c)
    for r in range(o2.shape[0]):
        dot = 0.0
        for j in range(c):
            dot += g2[r, j] * o2[r, j]
        for j in range(c):
            gx2[r, j] = o2[r, j] * (g2[r, j] - dot)
    return (gx,)


@numba.njit(cache=True)
def log_softmax_fwd(x, out=None):
    c = x.shape[-1]
    sh = _shift_rows(x.reshape(-1, c))
    e = np.empty_like(sh)
    vexp(sh.reshape(-1), e.reshape(-1))
    if out is None:
        out = np.empty_like(x)
    o2 = out.reshape(-1, c)
    for r in range(sh.shape[0]):
        s = 0.0
        for j in range(c):
            s += e[r, j]
        ls = math.log(s)
        for j in range(c):
            o2[r, j] = sh[r, j] - ls
    return (out,)


@numba.njit(cache=True)
def log_softmax_bwd(g_out, x, out, into_x=None):
    c = x.shape[-1]
    g2 = g_out.reshape(-1, c)
    p = np.empty_like(out)
    vexp(out.reshape(-1), p.reshape(-1))
    p2 = p.reshape(-1, c)
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    gx2 = gx.reshape(-1, c)
    for r in range(p2.shape[0]):
        gs = 0.0
        for j in range(c):
            gs += g2[r, j]
        for j in range(c):
            gx2[r, j] = g2[r, j] - p2[r, j] * gs
    return (gx,)


# --------------------------------------------------------------------------- dropout
@numba.njit(cache=True)
def dropout_fwd(x, u, p, training, out=None):
    # The driver supplies the uniform noise u, so forward and backward agree on the mask
    # without saving it (bwd recomputes u >= p).
    if out is None:
        out = np.empty_like(x)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    if not training or p <= 0.0:
        for i in range(xf.size):  # not `of[:] = xf`: slice assignment compiles ~1 s of error text
            of[i] = xf[i]
        return (out,)
    uf = u.reshape(-1)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    for i in range(xf.size):
        of[i] = xf[i] * scale if uf[i] >= p else 0
    return (out,)


@numba.njit(cache=True)
def dropout_bwd(g_out, x, u, p, training, out, into_x=None):
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    gf = g_out.reshape(-1)
    gxf = gx.reshape(-1)
    if not training or p <= 0.0:
        for i in range(gf.size):
            gxf[i] = gf[i]
    else:
        uf = u.reshape(-1)
        scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
        for i in range(gf.size):
            gxf[i] = gf[i] * scale if uf[i] >= p else 0
    return gx, np.zeros(0, x.dtype)


# --------------------------------------------------------------------------- broadcasting
def unbroadcast(g: np.ndarray, shape: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
    """Sum ``g`` over the axes numpy broadcasting added or stretched to reach ``shape``.

    With ``out`` (C-contiguous, ``shape``, ``g``'s dtype) the result is written there and
    ``out`` itself is returned.
    """
    shape = tuple(shape)
    if g.shape == shape:
        if out is None:
            return np.ascontiguousarray(g)
        np.copyto(out, g)
        return out
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if out is not None:
        if axes:
            # keepdims shape of the reduction = (1,) * lead + shape: a view of out.
            np.sum(g, axis=axes, keepdims=True, out=out.reshape((1,) * lead + shape))
        else:
            np.copyto(out, g.reshape(shape))
        return out
    r = g.sum(axis=axes, keepdims=True) if axes else g
    return np.ascontiguousarray(r.reshape(shape), dtype=g.dtype)
