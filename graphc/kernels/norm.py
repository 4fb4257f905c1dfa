"""Normalisation kernels: layernorm, add_norm (layernorm of a residual sum), rmsnorm, batchnorm.

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

from graphc.kernels.parallel import block_bounds, row_blocks, run_blocks


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


@numba.njit(cache=True)
def _sum8(a):
    """_sum4 with eight partial sums (one fixed order): the SLP vectorizer packs them into
    vector adds."""
    n = a.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += a[j]
        s1 += a[j + 1]
        s2 += a[j + 2]
        s3 += a[j + 3]
        s4 += a[j + 4]
        s5 += a[j + 5]
        s6 += a[j + 6]
        s7 += a[j + 7]
    for j in range(n8, n):
        s0 += a[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@numba.njit(cache=True)
def _sumsq8(a):
    """Sum of squares of a 1-D float64 array, in _sum8's order."""
    n = a.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += a[j] * a[j]
        s1 += a[j + 1] * a[j + 1]
        s2 += a[j + 2] * a[j + 2]
        s3 += a[j + 3] * a[j + 3]
        s4 += a[j + 4] * a[j + 4]
        s5 += a[j + 5] * a[j + 5]
        s6 += a[j + 6] * a[j + 6]
        s7 += a[j + 7] * a[j + 7]
    for j in range(n8, n):
        s0 += a[j] * a[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@numba.njit(cache=True, error_model="numpy")
def _ln_rows(x2, y2, weight, bias, eps, affine, out):
    """Layer norm of the rows of x2 (of x2 + y2 when y2 is not zero-size: add_norm's sum
    is formed row by row, never stored) into out, one block of rows per thread; returns the
    rows' mean and 1/std. Each row is loaded once into a float64 scratch row; the output is
    computed in float64 and rounded once."""
    n = x2.shape[0]
    mean = np.empty(n, dtype=x2.dtype)
    rstd = np.empty(n, dtype=x2.dtype)
    n_blocks = row_blocks(n, 16)
    run_blocks(_ln_block, n_blocks, (n_blocks, x2, y2, weight, bias, eps, affine, out, mean, rstd))
    return mean, rstd


@numba.njit(cache=True, error_model="numpy")
def _ln_block(i, n_blocks, x2, y2, weight, bias, eps, affine, out, mean, rstd):
    """Block i of _ln_rows. Rows are indexed as ``a[r, j]``, not through row views:
    measured 20-40% faster here (the views cost LLVM its vectorization of these short loops)."""
    r0, r1 = block_bounds(i, n_blocks, x2.shape[0])
    d = x2.shape[1]
    add = y2.size > 0
    use_w = affine and weight.size > 0
    use_b = affine and bias.size > 0
    wf = weight.reshape(-1)
    bf = bias.reshape(-1)
    dev = np.empty(d, dtype=np.float64)
    for r in range(r0, r1):
        if add:
            for j in range(d):
                dev[j] = x2[r, j] + y2[r, j]
        else:
            for j in range(d):
                dev[j] = x2[r, j]
        m = _sum8(dev) / d
        for j in range(d):
            dev[j] -= m
        v = _sumsq8(dev) / d
        rs = 1.0 / math.sqrt(v + eps)  # biased variance, as torch
        mean[r] = m
        rstd[r] = rs
        if use_w and use_b:
            for j in range(d):
                out[r, j] = dev[j] * rs * wf[j] + bf[j]
        elif use_w:
            for j in range(d):
                out[r, j] = dev[j] * rs * wf[j]
        elif use_b:
            for j in range(d):
                out[r, j] = dev[j] * rs + bf[j]
        else:
            for j in range(d):
                out[r, j] = dev[j] * rs


@numba.njit(cache=True, error_model="numpy")
def _ln_rows_bwd(g2, x2, y2, weight, bias, affine, mean, rstd, gx, gy=None):
    """Backward of _ln_rows (y2 zero-size: plain layer norm), one block of rows per thread;
    returns the weight and bias gradients. With add, x and y get the same gradient: written
    to gx and gy in one pass (gy None: only gx). The parameter gradients accumulate over rows
    in float64, per block, then add up."""
    n, d = x2.shape
    write_y = gy is not None
    gy_ = gx if gy is None else gy
    gw = np.zeros_like(weight)
    gb = np.zeros_like(bias)
    n_blocks = row_blocks(n, 16)
    gw_acc = np.zeros((n_blocks, d), dtype=np.float64)
    gb_acc = np.zeros((n_blocks, d), dtype=np.float64)
    run_blocks(
        _ln_block_bwd,
        n_blocks,
        (n_blocks, g2, x2, y2, weight, bias, affine, mean, rstd, gx, gy_, write_y, gw_acc, gb_acc),
    )
    if affine and weight.size > 0:
        _sum_blocks(gw_acc, gw.reshape(-1))
    if affine and bias.size > 0:
        _sum_blocks(gb_acc, gb.reshape(-1))
    return gw, gb


@numba.njit(cache=True)
def _sum_blocks(acc, out):
    """out[j] = sum over blocks of acc[block, j], in block order."""
    for j in range(out.size):
        tot = 0.0
        for b in range(acc.shape[0]):
            tot += acc[b, j]
        out[j] = tot


@numba.njit(cache=True, error_model="numpy")
def _ln_block_bwd(
    i, n_blocks, g2, x2, y2, weight, bias, affine, mean, rstd, gx, gy, write_y, gw_blocks, gb_blocks
):
    """Block i of _ln_rows_bwd; adds its rows' parameter gradients into row i of gw_blocks,
    gb_blocks."""
    r0, r1 = block_bounds(i, n_blocks, x2.shape[0])
    gw_acc, gb_acc = gw_blocks[i], gb_blocks[i]
    d = x2.shape[1]
    add = y2.size > 0
    use_w = affine and weight.size > 0
    use_b = affine and bias.size > 0
    wf = weight.reshape(-1)
    xhat = np.empty(d, dtype=np.float64)
    gxhat = np.empty(d, dtype=np.float64)
    prod = np.empty(d, dtype=np.float64)
    for r in range(r0, r1):
        m = mean[r]
        rs = rstd[r]
        if add:
            for j in range(d):
                xhat[j] = ((x2[r, j] + y2[r, j]) - m) * rs
        else:
            for j in range(d):
                xhat[j] = (x2[r, j] - m) * rs
        if use_w:
            for j in range(d):
                gxhat[j] = g2[r, j] * wf[j]
            for j in range(d):
                gw_acc[j] += g2[r, j] * xhat[j]
        else:
            for j in range(d):
                gxhat[j] = g2[r, j]
        if use_b:
            for j in range(d):
                gb_acc[j] += g2[r, j]
        for j in range(d):
            prod[j] = gxhat[j] * xhat[j]
        s1 = _sum4(gxhat) / d
        s2 = _sum4(prod) / d
        for j in range(d):
            gx[r, j] = rs * (gxhat[j] - s1 - xhat[j] * s2)
        if write_y:
            for j in range(d):
                gy[r, j] = gx[r, j]


@numba.njit(cache=True)
def layernorm_fwd(x, weight, bias, eps, affine, out=None):
    # one call whatever `out` is: both forms of the call would each compile (and inline) _ln_rows
    d = x.shape[-1]
    none = np.empty((0, d), dtype=x.dtype)
    y = np.empty_like(x) if out is None else out
    mean, rstd = _ln_rows(x.reshape(-1, d), none, weight, bias, eps, affine, y.reshape(-1, d))
    return y, mean, rstd


@numba.njit(cache=True)
def layernorm_bwd(g_out, x, weight, bias, eps, affine, saved0, saved1, out, into_x=None):
    d = x.shape[-1]
    none = np.empty((0, d), dtype=x.dtype)
    gx = np.empty_like(x) if into_x is None else into_x
    g2, x2 = g_out.reshape(-1, d), x.reshape(-1, d)
    gw, gb = _ln_rows_bwd(g2, x2, none, weight, bias, affine, saved0, saved1, gx.reshape(-1, d))
    return gx, gw, gb


# --------------------------------------------------------------------------- add_norm
@numba.njit(cache=True)
def add_norm_fwd(x, y, weight, bias, eps, out=None):
    # The residual sum is formed row by row and not saved: the backward recomputes it.
    d = x.shape[-1]
    z = np.empty_like(x) if out is None else out
    mean, rstd = _ln_rows(x.reshape(-1, d), y.reshape(-1, d), weight, bias, eps, True, z.reshape(-1, d))
    return z, mean, rstd


@numba.njit(cache=True)
def add_norm_bwd(g_out, x, y, weight, bias, eps, saved0, saved1, out, into_x=None, into_y=None):
    # x and y get the same gradient (that of their sum): computed once, written to both.
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    y2 = y.reshape(-1, d)
    g2 = g_out.reshape(-1, d)
    gx = np.empty_like(x) if into_x is None else into_x
    gy = np.empty_like(y) if into_y is None else into_y
    gw, gb = _ln_rows_bwd(
        g2, x2, y2, weight, bias, True, saved0, saved1, gx.reshape(-1, d), gy.reshape(-1, d)
    )
    return gx, gy, gw, gb


# --------------------------------------------------------------------------- rmsnorm
@numba.njit(cache=True)
def rmsnorm_fwd(x, weight, eps, out=None):
    # y = x / √(mean(x²) + eps) · w per row of the last axis; saves the per-row 1/rms.
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    y = np.empty_like(x) if out is None else out
    y2 = y.reshape(-1, d)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)
    for i in range(x2.shape[0]):
        ss = 0.0
        for j in range(d):
            ss += float(x2[i, j]) * float(x2[i, j])
        r = 1.0 / math.sqrt(ss / d + eps)
        rstd[i] = r
        for j in range(d):
            y2[i, j] = x2[i, j] * r * weight[j]
    return y, rstd


@numba.njit(cache=True)
def rmsnorm_bwd(g_out, x, weight, eps, saved0, out, into_x=None):
    # With x̂ = x·r and ĝ = g·w: dx = r·(ĝ - x̂·mean(ĝ·x̂)), dw = Σ_rows g·x̂.
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    g2 = g_out.reshape(-1, d)
    gx = np.empty_like(x) if into_x is None else into_x
    gx2 = gx.reshape(-1, d)
    gw = np.zeros(d, dtype=np.float64)
    for i in range(x2.shape[0]):
        r = float(saved0[i])
        dot = 0.0
        for j in range(d):
            xh = x2[i, j] * r
            gw[j] += g2[i, j] * xh
            dot += float(g2[i, j]) * weight[j] * xh
        dot /= d
        for j in range(d):
            xh = x2[i, j] * r
            gx2[i, j] = r * (g2[i, j] * weight[j] - xh * dot)
    return gx, gw.astype(x.dtype)


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
