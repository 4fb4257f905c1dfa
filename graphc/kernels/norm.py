"""Normalisation kernels: layernorm, add_norm (layernorm of a residual sum), batchnorm.

Row statistics are accumulated in float64 scalars whatever the input dtype (two passes:
mean, then squared deviations), which costs nothing measurable and avoids float32
cancellation in the variance. Saved tensors are the per-row (layernorm) or per-channel
(batchnorm) mean and reciprocal standard deviation, in the input dtype.

Absent affine params (``affine=False``) arrive as zero-size arrays and act as weight 1,
bias 0; their gradients are returned as ``np.zeros_like(param)`` (zero-size too).
"""

import math

import numba
import numpy as np


# --------------------------------------------------------------------------- layernorm
@numba.njit(cache=True)
def _sum4(a):
    """Sum of a 1-D array in float64 with four interleaved partial sums: breaks the FP-add
    latency chain (no fastmath needed) and keeps a fixed, deterministic order."""
    n = a.size
    s0 = s1 = s2 = s3 = 0.0
    n4 = n - n % 4
    for j in range(0, n4, 4):
        s0 += a[j]
        s1 += a[j + 1]
        s2 += a[j + 2]
        s3 += a[j + 3]
    for j in range(n4, n):
        s0 += a[j]
    return (s0 + s1) + (s2 + s3)


@numba.njit(cache=True, error_model="numpy")
def _ln_rows(x2, weight, bias, eps, affine, out=None):
    n, d = x2.shape
    if out is None:
        out = np.empty_like(x2)
    mean = np.empty(n, dtype=x2.dtype)
    rstd = np.empty(n, dtype=x2.dtype)
    use_w = affine and weight.size > 0
    use_b = affine and bias.size > 0
    wf = weight.reshape(-1)
    bf = bias.reshape(-1)
    dev = np.empty(d, dtype=np.float64)
    for r in range(n):
        row = x2[r]
        orow = out[r]
        m = _sum4(row) / d
        for j in range(d):
            dev[j] = row[j] - m
        for j in range(d):
            orow[j] = dev[j] * dev[j]  # scratch: squared deviations
        rs = 1.0 / math.sqrt(_sum4(orow) / d + eps)  # biased variance, as torch
        mean[r] = m
        rstd[r] = rs
        for j in range(d):
            orow[j] = dev[j] * rs
        if use_w:
            for j in range(d):
                orow[j] *= wf[j]
        if use_b:
            for j in range(d):
                orow[j] += bf[j]
    return out, mean, rstd


@numba.njit(cache=True, error_model="numpy")
def _ln_rows_bwd(g2, x2, weight, bias, affine, mean, rstd, gx=None):
    n, d = x2.shape
    if gx is None:
        gx = np.empty_like(x2)
    gw = np.zeros_like(weight)
    gb = np.zeros_like(bias)
    use_w = affine and weight.size > 0
    use_b = affine and bias.size > 0
    wf = weight.reshape(-1)
    gwf = gw.reshape(-1)
    gbf = gb.reshape(-1)
    xhat = np.empty(d, dtype=np.float64)
    gxhat = np.empty(d, dtype=np.float64)
    prod = np.empty(d, dtype=np.float64)
    for r in range(n):
        m = mean[r]
        rs = rstd[r]
        grow = g2[r]
        for j in range(d):
            xhat[j] = (x2[r, j] - m) * rs
        if use_w:
            for j in range(d):
                gxhat[j] = grow[j] * wf[j]
            for j in range(d):
                gwf[j] += grow[j] * xhat[j]
        else:
            for j in range(d):
                gxhat[j] = grow[j]
        if use_b:
            for j in range(d):
                gbf[j] += grow[j]
        for j in range(d):
            prod[j] = gxhat[j] * xhat[j]
        s1 = _sum4(gxhat) / d
        s2 = _sum4(prod) / d
        for j in range(d):
            gx[r, j] = rs * (gxhat[j] - s1 - xhat[j] * s2)
    return gx, gw, gb


@numba.njit(cache=True)
def layernorm_fwd(x, weight, bias, eps, affine, out=None):
    d = x.shape[-1]
    if out is None:
        out2, mean, rstd = _ln_rows(x.reshape(-1, d), weight, bias, eps, affine)
        return out2.reshape(x.shape), mean, rstd
    _, mean, rstd = _ln_rows(x.reshape(-1, d), weight, bias, eps, affine, out.reshape(-1, d))
    return out, mean, rstd


@numba.njit(cache=True)
def layernorm_bwd(g_out, x, weight, bias, eps, affine, saved0, saved1, out, into_x=None):
    d = x.shape[-1]
    g2 = g_out.reshape(-1, d)
    x2 = x.reshape(-1, d)
    if into_x is None:
        gx2, gw, gb = _ln_rows_bwd(g2, x2, weight, bias, affine, saved0, saved1)
        return gx2.reshape(x.shape), gw, gb
    _, gw, gb = _ln_rows_bwd(g2, x2, weight, bias, affine, saved0, saved1, into_x.reshape(-1, d))
    return into_x, gw, gb


# --------------------------------------------------------------------------- add_norm
@numba.njit(cache=True)
def add_norm_fwd(x, y, weight, bias, eps, out=None):
    # The residual sum is not saved: the backward recomputes it (one add) to save memory.
    d = x.shape[-1]
    s2 = (x + y).reshape(-1, d)
    if out is None:
        out2, mean, rstd = _ln_rows(s2, weight, bias, eps, True)
        return out2.reshape(x.shape), mean, rstd
    _, mean, rstd = _ln_rows(s2, weight, bias, eps, True, out.reshape(-1, d))
    return out, mean, rstd


@numba.njit(cache=True)
def add_norm_bwd(g_out, x, y, weight, bias, eps, saved0, saved1, out, into_x=None, into_y=None):
    # x and y get the same gradient (that of their sum): computed once, then copied.
    d = x.shape[-1]
    s2 = (x + y).reshape(-1, d)
    g2 = g_out.reshape(-1, d)
    if into_x is None:
        gs2, gw, gb = _ln_rows_bwd(g2, s2, weight, bias, True, saved0, saved1)
        gx = gs2.reshape(x.shape)
    else:
        _, gw, gb = _ln_rows_bwd(g2, s2, weight, bias, True, saved0, saved1, into_x.reshape(-1, d))
        gx = into_x
    if into_y is None:
        gy = gx.copy()
    else:
        src = gx.reshape(-1)
        dst = into_y.reshape(-1)
        for i in range(src.size):  # (a loop: numba's array-slice assignment is slower)
            dst[i] = src[i]
        gy = into_y
    return gx, gy, gw, gb


# --------------------------------------------------------------------------- batchnorm
@numba.njit(cache=True)
def batchnorm_fwd(x, weight, bias, running_mean, running_var, eps, momentum, training, out=None):
    # [B, C, *spatial] viewed as [B, C, L]; statistics per channel over B and L.
    b_n, c_n = x.shape[0], x.shape[1]
    x3 = x.reshape(b_n, c_n, -1)
    l_n = x3.shape[2]
    cnt = b_n * l_n
    if out is None:
        out = np.empty_like(x)
    o3 = out.reshape(b_n, c_n, l_n)
    mean = np.empty(c_n, dtype=x.dtype)
    rstd = np.empty(c_n, dtype=x.dtype)
    wf = weight.reshape(-1)
    bf = bias.reshape(-1)
    for c in range(c_n):
        if training:
            s = 0.0
            for b in range(b_n):
                for i in range(l_n):
                    s += x3[b, c, i]
            m = s / cnt
            v = 0.0
            for b in range(b_n):
                for i in range(l_n):
                    t = x3[b, c, i] - m
                    v += t * t
            var = v / cnt
            # torch: running stats blend in the *unbiased* batch variance.
            unbiased = v / (cnt - 1) if cnt > 1 else var
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * m
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased
        else:
            m = running_mean[c]
            var = running_var[c]
        rs = 1.0 / math.sqrt(var + eps)
        mean[c] = m
        rstd[c] = rs
        scale = rs * (wf[c] if weight.size > 0 else 1.0)
        shift = bf[c] if bias.size > 0 else 0.0
        for b in range(b_n):
            for i in range(l_n):
                o3[b, c, i] = (x3[b, c, i] - m) * scale + shift
    return out, mean, rstd


@numba.njit(cache=True)
def batchnorm_bwd(
    g_out,
    x,
    weight,
    bias,
    running_mean,
    running_var,
    eps,
    momentum,
    training,
    saved0,
    saved1,
    out,
    into_x=None,
):
    b_n, c_n = x.shape[0], x.shape[1]
    x3 = x.reshape(b_n, c_n, -1)
    g3 = g_out.reshape(b_n, c_n, -1)
    l_n = x3.shape[2]
    cnt = b_n * l_n
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    gx3 = gx.reshape(b_n, c_n, l_n)
    gw = np.zeros_like(weight)
    gb = np.zeros_like(bias)
    gwf = gw.reshape(-1)
    gbf = gb.reshape(-1)
    wf = weight.reshape(-1)
    for c in range(c_n):
        m = saved0[c]
        rs = saved1[c]
        w = wf[c] if weight.size > 0 else 1.0
        sg = 0.0  # sum of g
        sgx = 0.0  # sum of g * xhat
        for b in range(b_n):
            for i in range(l_n):
                g = g3[b, c, i]
                sg += g
                sgx += g * (x3[b, c, i] - m) * rs
        if weight.size > 0:
            gwf[c] = sgx
        if bias.size > 0:
            gbf[c] = sg
        if training:
            # Batch statistics depend on x: project out the mean and xhat directions.
            mg = sg / cnt
            mgx = sgx / cnt
            for b in range(b_n):
                for i in range(l_n):
                    xh = (x3[b, c, i] - m) * rs
                    gx3[b, c, i] = w * rs * (g3[b, c, i] - mg - xh * mgx)
        else:
            for b in range(b_n):
                for i in range(l_n):
                    gx3[b, c, i] = w * rs * g3[b, c, i]
    return gx, gw, gb
