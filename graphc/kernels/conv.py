"""Convolution kernels: conv2d and conv1d (PyTorch layouts and semantics).

conv2d is im2col + GEMM over chunks of images, one block of images per thread; that shared
machinery and why it is shaped so are in ``graphc.kernels.im2col``. A depthwise weight (one
input channel per filter, groups > 1) takes the direct loops of ``graphc.kernels.depthwise``
instead. conv1d is conv2d with H=1. conv_transpose2d, conv2d's adjoint, is in
``graphc.kernels.conv_transpose``.

An input gradient nobody needs (``into_x`` given as a zero-size array for a non-empty ``x``)
is skipped and that array is returned as it is.
"""

import numba
import numpy as np

from graphc.kernels.depthwise import depthwise_bwd_images, depthwise_fwd_images
from graphc.kernels.im2col import (
    add_partials,
    add_rows,
    bias_sums,
    chunk_images,
    col2im,
    from_cols,
    im2col,
    image_blocks,
    is_skipped,
    padded_plane,
    sum_rows,
    to_cols,
    zero,
)
from graphc.kernels.parallel import add_into, block_bounds, run_blocks


# --------------------------------------------------------------------------- conv2d
@numba.njit(cache=True)
def _conv2d_out_size(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    oh = (h + 2 * pad_h - dil_h * (kh - 1) - 1) // stride_h + 1
    ow = (w + 2 * pad_w - dil_w * (kw - 1) - 1) // stride_w + 1
    return oh, ow


@numba.njit(cache=True)
def _conv2d_fwd_images(x, weight, bias, with_bias, groups, out, b0, b1, geo):
    """out[b] = conv(x[b]) for the images b0..b1-1 (one thread's block)."""
    o_n, cg, kh, kw = weight.shape
    og, rows = o_n // groups, cg * kh * kw
    oh, ow = out.shape[2], out.shape[3]
    p = oh * ow
    w3 = weight.reshape(groups, og, rows)
    out3 = out.reshape(out.shape[0], o_n, p)
    out4 = out.reshape(out.shape[0], groups, og, p)
    bf = bias.reshape(-1)
    n = chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    res_buf = np.empty(og * n * p if n > 1 else 0, dtype=x.dtype)
    pad = padded_plane(x.shape[2], x.shape[3], geo, x.dtype)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        for k in range(m):
            im2col(x[c0 + k], col, k * p, geo, oh, ow, pad)
        col3 = col.reshape(groups, rows, m * p)
        for g in range(groups):
            if m == 1:  # straight into the output image
                np.dot(w3[g], col3[g], out4[c0, g])
            else:
                res = res_buf[: og * m * p].reshape(og, m * p)
                np.dot(w3[g], col3[g], res)
                from_cols(res, out3, c0, m, g * og)
        if with_bias:
            for k in range(m):
                add_rows(out3[c0 + k], bf)


@numba.njit(cache=True)
def _conv2d_bwd_images(g_out, x, weight, groups, gx, need_gx, gw, gb, with_bias, b0, b1, geo):
    """For the images b0..b1-1: gx[b] (when need_gx), and this block's sums over its images of
    the weight gradient into gw [O, cg*kh*kw] and of the bias gradient into gb (float64), both
    overwritten."""
    o_n, cg, kh, kw = weight.shape
    og, rows = o_n // groups, cg * kh * kw
    oh, ow = g_out.shape[2], g_out.shape[3]
    p = oh * ow
    w3 = weight.reshape(groups, og, rows)
    gw3 = gw.reshape(groups, og, rows)
    go3 = g_out.reshape(g_out.shape[0], o_n, p)
    go4 = g_out.reshape(g_out.shape[0], groups, og, p)
    n = chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    gcol_buf = np.empty(groups * rows * n * p if need_gx else 0, dtype=x.dtype)
    go_buf = np.empty(og * n * p if n > 1 else 0, dtype=x.dtype)
    # The weight gradient's GEMM as [rows, og] (patches @ g_out.T) runs ~25% faster than as
    # [og, rows] when rows > og and 2x slower when rows < og (measured with OpenBLAS's Haswell
    # kernels: 16.7 against 21.6 us per image on the CNN's second layer, 11.5 against 5.7 on
    # its first), so the shape picks; the transposed sums are turned around once per block.
    transposed = rows > og
    tmp = np.empty((og, rows), dtype=x.dtype)
    tmp_t = np.empty((rows, og), dtype=x.dtype)
    gw_t = np.zeros((groups if transposed else 0, rows, og), dtype=x.dtype)
    pad = padded_plane(x.shape[2], x.shape[3], geo, x.dtype)
    gpad = padded_plane(x.shape[2], x.shape[3], geo, x.dtype)  # col2im's: it dirties the border
    zero(gw)
    zero(gb)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        for k in range(m):
            im2col(x[c0 + k], col, k * p, geo, oh, ow, pad)
        col3 = col.reshape(groups, rows, m * p)
        gcol = gcol_buf[: groups * rows * m * p].reshape(-1, m * p)  # no rows when not need_gx
        for g in range(groups):
            if m == 1:
                go = go4[c0, g]
            else:
                go = go_buf[: og * m * p].reshape(og, m * p)
                to_cols(go3, c0, m, g * og, go)
            if transposed:
                np.dot(col3[g], go.T, tmp_t)
                add_into(gw_t[g], tmp_t)
            else:
                np.dot(go, col3[g].T, tmp)
                add_into(gw3[g], tmp)
            if need_gx:
                np.dot(w3[g].T, go, gcol.reshape(groups, rows, m * p)[g])
        for k in range(m):
            if need_gx:
                col2im(gcol, k * p, gx[c0 + k], geo, oh, ow, gpad)
            if with_bias:
                sum_rows(go3[c0 + k], gb)
    if transposed:
        for g in range(groups):
            for o in range(og):
                d = gw3[g, o]
                for r in range(rows):
                    d[r] = gw_t[g, r, o]


@numba.njit(cache=True)
def _conv2d_fwd_block(blk, n_blocks, x, weight, bias, with_bias, groups, out, geo):
    """Block blk of the images (a thread's share): a depthwise weight takes the direct loops,
    any other im2col + GEMM."""
    b0, b1 = block_bounds(blk, n_blocks, x.shape[0])
    if weight.shape[1] == 1 and groups > 1:
        depthwise_fwd_images(x, weight, bias, with_bias, out, b0, b1, geo)
    else:
        _conv2d_fwd_images(x, weight, bias, with_bias, groups, out, b0, b1, geo)


@numba.njit(cache=True)
def _conv2d_bwd_block(
    blk, n_blocks, g_out, x, weight, groups, gx, need_gx, gw_parts, gb_parts, with_bias, geo
):
    """The gradients of _conv2d_fwd_block, chosen alike; the block's weight and bias gradient
    sums go to gw_parts[blk] and gb_parts[blk]."""
    b0, b1 = block_bounds(blk, n_blocks, x.shape[0])
    gw, gb = gw_parts[blk], gb_parts[blk]
    if weight.shape[1] == 1 and groups > 1:
        depthwise_bwd_images(g_out, x, weight, gx, need_gx, gw, gb, with_bias, b0, b1, geo)
    else:
        _conv2d_bwd_images(g_out, x, weight, groups, gx, need_gx, gw, gb, with_bias, b0, b1, geo)


@numba.njit(cache=True)
def conv2d_fwd(x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out=None):
    return _conv2d_fwd(x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out)


# conv2d's bodies, which conv1d calls too: a kernel the driver calls must not be compiled first
# as another kernel's callee, whose machine code is Numba's quick one (graphc.kernels._codegen)
@numba.njit(cache=True)
def _conv2d_fwd(x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out):
    b_n, c_n, h, w = x.shape
    o_n, cg, kh, kw = weight.shape
    oh, ow = _conv2d_out_size(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    if out is None:
        out = np.empty((b_n, o_n, oh, ow), dtype=x.dtype)
    geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    with_bias = has_bias and bias.size > 0
    n_blocks = image_blocks(b_n, o_n * cg * kh * kw * oh * ow)
    run_blocks(_conv2d_fwd_block, n_blocks, (n_blocks, x, weight, bias, with_bias, groups, out, geo))
    return (out,)


@numba.njit(cache=True)
def conv2d_bwd(
    g_out, x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out, into_x=None
):
    return _conv2d_bwd(g_out, x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias,
                       into_x)


@numba.njit(cache=True)
def _conv2d_bwd(g_out, x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, into_x):
    b_n = x.shape[0]
    o_n, cg, kh, kw = weight.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    need_gx = not is_skipped(into_x, x)
    gx = np.empty_like(x) if into_x is None else into_x
    with_bias = has_bias and bias.size > 0
    n_blocks = image_blocks(b_n, 2 * o_n * cg * kh * kw * oh * ow)
    # per-block partial sums of the weight and bias gradients (no two threads add into one)
    gw_parts = np.empty((n_blocks, o_n, cg * kh * kw), dtype=x.dtype)
    gb_parts = np.empty((n_blocks, o_n), dtype=np.float64)
    args = (n_blocks, g_out, x, weight, groups, gx, need_gx, gw_parts, gb_parts, with_bias, geo)
    run_blocks(_conv2d_bwd_block, n_blocks, args)
    gw = np.empty_like(weight)
    add_partials(gw_parts, gw)
    return gx, gw, bias_sums(gb_parts, bias, with_bias)


# --------------------------------------------------------------------------- conv1d
@numba.njit(cache=True)
def conv1d_fwd(x, weight, bias, stride, padding, dilation, groups, has_bias, out=None):
    # conv2d's height arguments as int64 values, not literals: with the literals numba
    # compiles conv2d all over again for conv1d (Literal[int](1) is its own type)
    one, zero = np.int64(1), np.int64(0)
    b_n, c_n, length = x.shape
    o_n, cg, k = weight.shape
    x4 = x.reshape(b_n, c_n, 1, length)
    w4 = weight.reshape(o_n, cg, 1, k)
    if out is None:
        out4 = _conv2d_fwd(x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, None)[0]
        return (out4.reshape(b_n, o_n, out4.shape[3]),)
    out4 = out.reshape(b_n, o_n, 1, out.shape[2])
    _conv2d_fwd(x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, out4)
    return (out,)


@numba.njit(cache=True)
def conv1d_bwd(g_out, x, weight, bias, stride, padding, dilation, groups, has_bias, out, into_x=None):
    one, zero = np.int64(1), np.int64(0)  # not literals (see conv1d_fwd)
    b_n, c_n, length = x.shape
    o_n, cg, k = weight.shape
    x4 = x.reshape(b_n, c_n, 1, length)
    w4 = weight.reshape(o_n, cg, 1, k)
    g4 = g_out.reshape(b_n, o_n, 1, g_out.shape[2])
    if into_x is None:
        gx, gw, gb = _conv2d_bwd(g4, x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, None)
        return gx.reshape(x.shape), gw.reshape(weight.shape), gb
    gx4 = into_x.reshape(b_n, c_n, 1, length) if into_x.size == x.size else into_x.reshape(0, 0, 0, 0)
    _, gw, gb = _conv2d_bwd(g4, x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, gx4)
    return into_x, gw.reshape(weight.shape), gb
