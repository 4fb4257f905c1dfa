"""conv_transpose2d kernels (PyTorch layouts and semantics): the adjoint of conv2d. Its forward
is conv2d's input-gradient path (GEMM into patch columns, then ``col2im``), its backward is
conv2d's forward path (``im2col``, then GEMMs); the shared machinery is in
``graphc.kernels.im2col``.

An input gradient nobody needs (``into_x`` given as a zero-size array for a non-empty ``x``)
is skipped and that array is returned as it is.
"""

import numba
import numpy as np

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


@numba.njit(cache=True)
def _convt_fwd_block(blk, n_blocks, x, weight, bias, with_bias, groups, out, geo):
    """out[b] = conv_transpose(x[b]) for the images b0..b1-1 of block blk (a thread's share):
    x's grid is the patch grid and the output image plays conv2d's input (GEMM into patch
    columns, then col2im)."""
    b0, b1 = block_bounds(blk, n_blocks, x.shape[0])
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    _, og, kh, kw = weight.shape
    cg, rows = c_n // groups, og * kh * kw
    o_n, p = out.shape[1], h * w
    w3 = weight.reshape(groups, cg, rows)
    x3 = x.reshape(x.shape[0], c_n, p)
    x4 = x.reshape(x.shape[0], groups, cg, p)
    out3 = out.reshape(out.shape[0], o_n, out.shape[2] * out.shape[3])
    bf = bias.reshape(-1)
    n = chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    x_buf = np.empty(cg * n * p if n > 1 else 0, dtype=x.dtype)
    pad = padded_plane(out.shape[2], out.shape[3], geo, x.dtype)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        col3 = col.reshape(groups, rows, m * p)
        for g in range(groups):
            if m == 1:
                xg = x4[c0, g]
            else:
                xg = x_buf[: cg * m * p].reshape(cg, m * p)
                to_cols(x3, c0, m, g * cg, xg)
            np.dot(w3[g].T, xg, col3[g])
        for k in range(m):
            col2im(col, k * p, out[c0 + k], geo, h, w, pad)
            if with_bias:
                add_rows(out3[c0 + k], bf)


@numba.njit(cache=True)
def _convt_bwd_block(
    blk, n_blocks, g_out, x, weight, groups, gx, need_gx, gw_parts, gb_parts, with_bias, geo
):
    """Gradients of _convt_fwd_block for the images b0..b1-1 of block blk: gx[b] (when
    need_gx), the block's weight- and bias-gradient sums into gw_parts[blk] [C, og*kh*kw] and
    gb_parts[blk] (float64), overwritten."""
    b0, b1 = block_bounds(blk, n_blocks, x.shape[0])
    gw, gb = gw_parts[blk], gb_parts[blk]
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    _, og, kh, kw = weight.shape
    cg, rows = c_n // groups, og * kh * kw
    o_n, p = g_out.shape[1], h * w
    w3 = weight.reshape(groups, cg, rows)
    gw3 = gw.reshape(groups, cg, rows)
    x3 = x.reshape(x.shape[0], c_n, p)
    x4 = x.reshape(x.shape[0], groups, cg, p)
    go3 = g_out.reshape(g_out.shape[0], o_n, g_out.shape[2] * g_out.shape[3])
    n = chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    x_buf = np.empty(cg * n * p if n > 1 else 0, dtype=x.dtype)
    res_buf = np.empty(cg * n * p if n > 1 and need_gx else 0, dtype=x.dtype)
    tmp = np.empty((cg, rows), dtype=x.dtype)
    pad = padded_plane(g_out.shape[2], g_out.shape[3], geo, x.dtype)
    zero(gw)
    zero(gb)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        for k in range(m):
            im2col(g_out[c0 + k], col, k * p, geo, h, w, pad)
        col3 = col.reshape(groups, rows, m * p)
        for g in range(groups):
            if m == 1:
                xg = x4[c0, g]
            else:
                xg = x_buf[: cg * m * p].reshape(cg, m * p)
                to_cols(x3, c0, m, g * cg, xg)
            np.dot(xg, col3[g].T, tmp)
            add_into(gw3[g], tmp)
            if need_gx:
                if m == 1:
                    np.dot(w3[g], col3[g], gx[c0].reshape(groups, cg, p)[g])
                else:
                    res = res_buf[: cg * m * p].reshape(cg, m * p)
                    np.dot(w3[g], col3[g], res)
                    from_cols(res, gx.reshape(gx.shape[0], c_n, p), c0, m, g * cg)
        if with_bias:
            for k in range(m):
                sum_rows(go3[c0 + k], gb)


@numba.njit(cache=True)
def conv_transpose2d_fwd(
    x,
    weight,
    bias,
    stride_h,
    stride_w,
    pad_h,
    pad_w,
    out_pad_h,
    out_pad_w,
    dil_h,
    dil_w,
    groups,
    has_bias,
    out=None,
):
    b_n, c_n, h, w = x.shape
    _, og, kh, kw = weight.shape
    o_n = og * groups
    oh = (h - 1) * stride_h - 2 * pad_h + dil_h * (kh - 1) + out_pad_h + 1
    ow = (w - 1) * stride_w - 2 * pad_w + dil_w * (kw - 1) + out_pad_w + 1
    if out is None:
        out = np.empty((b_n, o_n, oh, ow), dtype=x.dtype)
    geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    with_bias = has_bias and bias.size > 0
    n_blocks = image_blocks(b_n, c_n * og * kh * kw * h * w)
    run_blocks(_convt_fwd_block, n_blocks, (n_blocks, x, weight, bias, with_bias, groups, out, geo))
    return (out,)


@numba.njit(cache=True)
def conv_transpose2d_bwd(
    g_out,
    x,
    weight,
    bias,
    stride_h,
    stride_w,
    pad_h,
    pad_w,
    out_pad_h,
    out_pad_w,
    dil_h,
    dil_w,
    groups,
    has_bias,
    out,
    into_x=None,
):
    b_n, c_n, h, w = x.shape
    _, og, kh, kw = weight.shape
    o_n = og * groups
    geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    need_gx = not is_skipped(into_x, x)
    gx = np.empty_like(x) if into_x is None else into_x
    with_bias = has_bias and bias.size > 0
    n_blocks = image_blocks(b_n, 2 * c_n * og * kh * kw * h * w)
    gw_parts = np.empty((n_blocks, c_n, og * kh * kw), dtype=x.dtype)
    gb_parts = np.empty((n_blocks, o_n), dtype=np.float64)
    args = (n_blocks, g_out, x, weight, groups, gx, need_gx, gw_parts, gb_parts, with_bias, geo)
    run_blocks(_convt_bwd_block, n_blocks, args)
    gw = np.empty_like(weight)
    add_partials(gw_parts, gw)
    return gx, gw, bias_sums(gb_parts, bias, with_bias)
