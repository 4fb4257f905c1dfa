"""Depthwise convolution blocks (one input channel per filter: conv2d with groups = C and a
weight of shape [O, 1, kh, kw]), which ``conv.conv2d_fwd``/``conv2d_bwd`` call for such a
weight. im2col would make each channel a [1, K] times [K, P] GEMM, all overhead, so these run
as direct loops over the in-bounds row segments of each tap.

Like the im2col paths (``graphc.kernels.im2col``), each function covers one thread's block of
images ``b0 .. b1-1``; ``geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)``.
"""

import numba
import numpy as np

from graphc.kernels.im2col import sum_rows, zero


@numba.njit(cache=True)
def _valid(k, dil, pad, stride, size, n_out):
    """Outputs ``[lo, hi)`` whose tap ``k`` reads inside ``[0, size)``: input index
    ``o*stride + off`` with ``off = k*dil - pad``. Returns ``lo, hi, off``."""
    off = k * dil - pad
    lo = min(n_out, max(0, -(off // stride)))
    hi = max(lo, min(n_out, (size - 1 - off) // stride + 1))
    return lo, hi, off


@numba.njit(cache=True)
def _copy_flat(src, dst):
    """dst[...] = src for C-contiguous arrays of one size (a loop: numba's slice assignment
    between arrays is several times slower)."""
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(s.size):
        d[k] = s[k]


@numba.njit(cache=True)
def depthwise_fwd_images(x, weight, bias, with_bias, out, b0, b1, geo):
    """out[b] = the depthwise convolution of x[b] for the images b0..b1-1 (filter o reads
    channel o // (O/C)). Each output plane accumulates in a scratch plane, then is copied out:
    the inner loop vectorises better when LLVM knows its store target does not alias the input."""
    kh, kw, sh, sw, ph, pw, dh, dw = geo
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    o_n, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    mult = o_n // c_n
    acc = np.empty((oh, ow), dtype=x.dtype)
    bf = bias.reshape(-1)
    for b in range(b0, b1):
        for o in range(o_n):
            src = x[b, o // mult]
            zero(acc)
            for i in range(kh):
                y_lo, y_hi, y_off = _valid(i, dh, ph, sh, h, oh)
                for j in range(kw):
                    x_lo, x_hi, x_off = _valid(j, dw, pw, sw, w, ow)
                    wv = weight[o, 0, i, j]
                    for y in range(y_lo, y_hi):
                        s = src[y * sh + y_off]
                        a = acc[y]
                        for z in range(x_lo, x_hi):
                            a[z] += wv * s[z * sw + x_off]
            if with_bias:
                bv = bf[o]
                for y in range(oh):
                    a = acc[y]
                    for z in range(ow):
                        a[z] += bv
            _copy_flat(acc, out[b, o])


@numba.njit(cache=True)
def depthwise_bwd_images(g_out, x, weight, gx, need_gx, gw, gb, with_bias, b0, b1, geo):
    """Gradients of depthwise_fwd_images for the images b0..b1-1: gx[b] (when need_gx), this
    block's weight-gradient sums into gw [O, kh*kw] and bias-gradient sums into gb (float64),
    both overwritten. Each input-gradient plane accumulates in a scratch plane (see above)."""
    kh, kw, sh, sw, ph, pw, dh, dw = geo
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    o_n, oh, ow = g_out.shape[1], g_out.shape[2], g_out.shape[3]
    mult = o_n // c_n
    gacc = np.empty((h, w), dtype=x.dtype)
    one = np.zeros(1)
    zero(gw)
    zero(gb)
    for b in range(b0, b1):
        for c in range(c_n):
            src = x[b, c]
            zero(gacc)
            for o in range(c * mult, (c + 1) * mult):
                go = g_out[b, o]
                for i in range(kh):
                    y_lo, y_hi, y_off = _valid(i, dh, ph, sh, h, oh)
                    for j in range(kw):
                        x_lo, x_hi, x_off = _valid(j, dw, pw, sw, w, ow)
                        wv = weight[o, 0, i, j]
                        s = 0.0
                        for y in range(y_lo, y_hi):
                            g_row = go[y]
                            x_row = src[y * sh + y_off]
                            d_row = gacc[y * sh + y_off]
                            for z in range(x_lo, x_hi):
                                d_row[z * sw + x_off] += wv * g_row[z]
                                s += g_row[z] * x_row[z * sw + x_off]
                        gw[o, i * kw + j] += s
                if with_bias:
                    one[0] = 0.0
                    sum_rows(go.reshape(1, oh * ow), one)
                    gb[o] += one[0]
            if need_gx:
                _copy_flat(gacc, gx[b, c])
