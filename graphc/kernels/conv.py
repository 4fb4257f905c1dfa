"""Convolution kernels: conv1d, conv2d, conv_transpose2d (PyTorch layouts and semantics).

Every convolution is im2col + GEMM over a chunk of images: ``_im2col`` unrolls the patches of
each image into its column range of a ``[C*KH*KW, n*OH*OW]`` matrix, and one GEMM per channel
group covers the chunk. A chunk is one image when an image alone gives the GEMM
``_MIN_COLS`` columns (the GEMM then writes the output image in place, already in NCHW
layout); small images are grouped so that they do not pay one BLAS call each. Measured here
(CNN workload, 32x144 by 144x196 per image), a per-image GEMM runs at the same GFLOP/s as one
over several images.

Threads: the batch is split into one block of images per thread (`prange` over blocks; each
block is a serial loop calling single-threaded BLAS, see `graphc.kernels.threads`). The weight
and bias gradients sum over the batch, so each block writes its own partial sums and the
driver adds them after the parallel loop. A batch with little work stays one block
(`_image_blocks`). Scratch buffers are flat, allocated once per block; a chunk uses a prefix
reshaped to its size, which stays C-contiguous for BLAS.

Inner loops index views by the bare loop variable (``d = row[a:b]; d[z] = s[z]``): an index
like ``row[off + z]`` makes numba emit a negative-index wraparound test per element, which
stops LLVM from vectorising (measured: 1 ns per element against 0.05).

Depthwise convolution (one input channel per filter, groups > 1) skips im2col: a [1, K]
times [K, P] GEMM per channel is all overhead, so it runs as direct loops.

conv_transpose2d is the adjoint of conv2d: its forward is conv2d's input-gradient path
(GEMM then ``_col2im``), its backward is conv2d's forward path. conv1d is conv2d with H=1.

An input gradient nobody needs (``into_x`` given as a zero-size array for a non-empty ``x``)
is skipped and that array is returned as it is.
"""

import numba
import numpy as np

from graphc.kernels.parallel import block_bounds, row_blocks

# Multiply-adds a block of images should have before it gets its own thread: below this
# (~20-40 us of work), waking the other thread costs about what it saves.
_MIN_BLOCK_WORK = 1 << 21
# Output pixels from which one image is a GEMM of its own, and the most elements a chunk's
# patch matrix may have (1 MiB in float32: larger buffers fall out of L2).
_MIN_COLS = 256
_COL_BUDGET = 1 << 18


@numba.njit(cache=True)
def _image_blocks(n_images, work_per_image):
    """How many blocks of images to split the batch into (one per thread at most)."""
    return row_blocks(n_images, max(1, _MIN_BLOCK_WORK // max(1, work_per_image)))


@numba.njit(cache=True)
def _chunk_images(n_images, rows, cols_per_image):
    """Images per chunk: one when an image gives the GEMM _MIN_COLS columns, else as many as
    _COL_BUDGET allows (small images: the fewer BLAS calls the better; measured on the 8x8
    reference CNN, chunks of 4 images were 10% slower than the whole batch at once)."""
    if cols_per_image >= _MIN_COLS:
        return 1
    n = max(1, _COL_BUDGET // max(1, rows * cols_per_image))
    return max(1, min(n, n_images))


@numba.njit(cache=True)
def _valid(k, dil, pad, stride, size, n_out):
    """Outputs ``[lo, hi)`` whose tap ``k`` reads inside ``[0, size)``: input index
    ``o*stride + off`` with ``off = k*dil - pad``. Returns ``lo, hi, off``."""
    off = k * dil - pad
    lo = min(n_out, max(0, -(off // stride)))
    hi = max(lo, min(n_out, (size - 1 - off) // stride + 1))
    return lo, hi, off


@numba.njit(cache=True)
def _padded_plane(h, w, geo, dtype):
    """Scratch for _im2col/_col2im: one image plane with its padding around it (zeros)."""
    return np.zeros((h + 2 * geo[4]) * (w + 2 * geo[5]), dtype=dtype)


@numba.njit(cache=True)
def _im2col(src, col, off, geo, oh, ow, pad):
    """Patches of one image src [C, H, W] -> columns off .. off+oh*ow of col [C*kh*kw, *];
    ``geo = (kh, kw, sh, sw, ph, pw, dh, dw)``, (oh, ow) the patch grid. Each channel is
    first copied into the middle of the zero-padded plane ``pad`` (from _padded_plane; its
    border must be zero, so _col2im needs a plane of its own), so every patch row is a plain
    copy with no bounds test."""
    kh, kw, sh, sw, ph, pw, dh, dw = geo
    c_n, h, w = src.shape
    wp = w + 2 * pw
    span = (ow - 1) * sw + 1  # padded-plane elements one row of patches spans
    for c in range(c_n):
        plane = src[c]
        for y in range(h):
            d = pad[(y + ph) * wp + pw : (y + ph) * wp + pw + w]
            s = plane[y]
            for z in range(w):
                d[z] = s[z]
        for i in range(kh):
            for j in range(kw):
                row = col[(c * kh + i) * kw + j]
                for y in range(oh):
                    s0 = (y * sh + i * dh) * wp + j * dw
                    d = row[off + y * ow : off + (y + 1) * ow]
                    if sw == 1:  # contiguous: a vectorised copy
                        s = pad[s0 : s0 + ow]
                        for z in range(ow):
                            d[z] = s[z]
                    else:
                        s_strided = pad[s0 : s0 + span : sw]
                        for z in range(ow):
                            d[z] = s_strided[z]


@numba.njit(cache=True)
def _col2im(col, off, dst, geo, oh, ow, pad):
    """Adjoint of _im2col: dst [C, H, W] = columns off .. off+oh*ow of col summed back onto
    their input pixels (overwrites), accumulated in the padded plane ``pad`` whose middle is
    then copied out. Taps are added in a fixed order: the result does not depend on the
    thread count."""
    kh, kw, sh, sw, ph, pw, dh, dw = geo
    c_n, h, w = dst.shape
    wp = w + 2 * pw
    span = (ow - 1) * sw + 1
    for c in range(c_n):
        for q in range(pad.size):
            pad[q] = 0.0
        for i in range(kh):
            for j in range(kw):
                row = col[(c * kh + i) * kw + j]
                for y in range(oh):
                    s0 = (y * sh + i * dh) * wp + j * dw
                    s = row[off + y * ow : off + (y + 1) * ow]
                    if sw == 1:
                        d = pad[s0 : s0 + ow]
                        for z in range(ow):
                            d[z] += s[z]
                    else:
                        d_strided = pad[s0 : s0 + span : sw]
                        for z in range(ow):
                            d_strided[z] += s[z]
        plane = dst[c]
        for y in range(h):
            d = plane[y]
            s = pad[(y + ph) * wp + pw : (y + ph) * wp + pw + w]
            for z in range(w):
                d[z] = s[z]


@numba.njit(cache=True)
def _to_cols(a3, b0, m, c0, dst):
    """a3[b0:b0+m, c0:c0+R] ([B, C, P]) -> dst [R, m*P], the GEMM layout of a chunk."""
    p = a3.shape[2]
    for k in range(m):
        for r in range(dst.shape[0]):
            d = dst[r, k * p : (k + 1) * p]
            s = a3[b0 + k, c0 + r]
            for q in range(p):
                d[q] = s[q]


@numba.njit(cache=True)
def _from_cols(src, a3, b0, m, c0):
    """Inverse of _to_cols: src [R, m*P] -> a3[b0:b0+m, c0:c0+R]."""
    p = a3.shape[2]
    for k in range(m):
        for r in range(src.shape[0]):
            d = a3[b0 + k, c0 + r]
            s = src[r, k * p : (k + 1) * p]
            for q in range(p):
                d[q] = s[q]


@numba.njit(cache=True)
def _add_rows(a, v):
    """a [R, P] += v[r] along each row r (the bias)."""
    for r in range(a.shape[0]):
        bv = v[r]
        d = a[r]
        for q in range(a.shape[1]):
            d[q] += bv


@numba.njit(cache=True, fastmath=True)
def _sum_rows(a, acc):
    """acc[r] += sum of a [R, P]'s row r, in float64 (the bias gradient). fastmath lets LLVM
    split the sum over vector lanes (a fixed order, so still independent of the thread
    count); the sequential sum was latency-bound, 0.4 ms per step on the CNN's first layer."""
    for r in range(a.shape[0]):
        s = 0.0
        row = a[r]
        for q in range(a.shape[1]):
            s += row[q]
        acc[r] += s


@numba.njit(cache=True)
def _zero(a):
    """a[...] = 0 for a C-contiguous array. Here and below, explicit loops instead of array
    expressions (``a[:] = 0``, ``a += b``): each of those cost seconds of compile time in every
    kernel that inlines it (measured: one ``gw += tmp`` made conv2d_bwd's helper 3.5 s slower
    to compile)."""
    f = a.reshape(-1)
    for q in range(f.size):
        f[q] = 0.0


@numba.njit(cache=True)
def _add_into(dst, src):
    """dst [R, N] += src [R, N]."""
    for r in range(dst.shape[0]):
        d = dst[r]
        s = src[r]
        for q in range(dst.shape[1]):
            d[q] += s[q]


@numba.njit(cache=True)
def _add_partials(parts, out):
    """out[...] = the sum of parts [n, *out.shape] over its first axis (blocks in order)."""
    p2 = parts.reshape(parts.shape[0], -1)
    o = out.reshape(-1)
    s = p2[0]
    for q in range(o.size):
        o[q] = s[q]
    for i in range(1, p2.shape[0]):
        s = p2[i]
        for q in range(o.size):
            o[q] += s[q]


@numba.njit(cache=True)
def _bias_sums(parts, bias, with_bias):
    """The bias gradient: the blocks' float64 partial sums [n_blocks, O] added, in bias's
    shape and dtype (zeros when there is no bias)."""
    gb = np.zeros_like(bias)
    if with_bias:
        gbf = gb.reshape(-1)
        for o in range(gbf.size):
            s = 0.0
            for i in range(parts.shape[0]):
                s += parts[i, o]
            gbf[o] = s
    return gb


@numba.njit(cache=True)
def _is_skipped(into, like):
    """A zero-size destination for a non-empty gradient: the caller does not want it."""
    return into is not None and into.size == 0 and like.size > 0


@numba.njit(cache=True)
def _copy_flat(src, dst):
    """dst[...] = src for C-contiguous arrays of one size (a loop: numba's slice assignment
    between arrays is several times slower)."""
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(s.size):
        d[k] = s[k]


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
    n = _chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    res_buf = np.empty(og * n * p if n > 1 else 0, dtype=x.dtype)
    pad = _padded_plane(x.shape[2], x.shape[3], geo, x.dtype)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        for k in range(m):
            _im2col(x[c0 + k], col, k * p, geo, oh, ow, pad)
        col3 = col.reshape(groups, rows, m * p)
        for g in range(groups):
            if m == 1:  # straight into the output image
                np.dot(w3[g], col3[g], out4[c0, g])
            else:
                res = res_buf[: og * m * p].reshape(og, m * p)
                np.dot(w3[g], col3[g], res)
                _from_cols(res, out3, c0, m, g * og)
        if with_bias:
            for k in range(m):
                _add_rows(out3[c0 + k], bf)


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
    n = _chunk_images(b1 - b0, groups * rows, p)
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
    pad = _padded_plane(x.shape[2], x.shape[3], geo, x.dtype)
    gpad = _padded_plane(x.shape[2], x.shape[3], geo, x.dtype)  # _col2im's: it dirties the border
    _zero(gw)
    _zero(gb)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        for k in range(m):
            _im2col(x[c0 + k], col, k * p, geo, oh, ow, pad)
        col3 = col.reshape(groups, rows, m * p)
        gcol = gcol_buf[: groups * rows * m * p].reshape(-1, m * p)  # no rows when not need_gx
        for g in range(groups):
            if m == 1:
                go = go4[c0, g]
            else:
                go = go_buf[: og * m * p].reshape(og, m * p)
                _to_cols(go3, c0, m, g * og, go)
            if transposed:
                np.dot(col3[g], go.T, tmp_t)
                _add_into(gw_t[g], tmp_t)
            else:
                np.dot(go, col3[g].T, tmp)
                _add_into(gw3[g], tmp)
            if need_gx:
                np.dot(w3[g].T, go, gcol.reshape(groups, rows, m * p)[g])
        for k in range(m):
            if need_gx:
                _col2im(gcol, k * p, gx[c0 + k], geo, oh, ow, gpad)
            if with_bias:
                _sum_rows(go3[c0 + k], gb)
    if transposed:
        for g in range(groups):
            for o in range(og):
                d = gw3[g, o]
                for r in range(rows):
                    d[r] = gw_t[g, r, o]


@numba.njit(cache=True)
def _conv2d_fwd_block(x, weight, bias, with_bias, groups, out, b0, b1, geo):
    if weight.shape[1] == 1 and groups > 1:
        _depthwise_fwd_images(x, weight, bias, with_bias, out, b0, b1, geo)
    else:
        _conv2d_fwd_images(x, weight, bias, with_bias, groups, out, b0, b1, geo)


@numba.njit(cache=True)
def _conv2d_bwd_block(g_out, x, weight, groups, gx, need_gx, gw, gb, with_bias, b0, b1, geo):
    if weight.shape[1] == 1 and groups > 1:
        _depthwise_bwd_images(g_out, x, weight, gx, need_gx, gw, gb, with_bias, b0, b1, geo)
    else:
        _conv2d_bwd_images(g_out, x, weight, groups, gx, need_gx, gw, gb, with_bias, b0, b1, geo)


@numba.njit(cache=True, parallel=True)
def conv2d_fwd(x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out=None):
    b_n, c_n, h, w = x.shape
    o_n, cg, kh, kw = weight.shape
    oh, ow = _conv2d_out_size(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    if out is None:
        out = np.empty((b_n, o_n, oh, ow), dtype=x.dtype)
    geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    with_bias = has_bias and bias.size > 0
    n_blocks = _image_blocks(b_n, o_n * cg * kh * kw * oh * ow)
    if n_blocks == 1:
        lo, hi = block_bounds(0, 1, b_n)  # variables: a literal 0 would compile the callee twice
        _conv2d_fwd_block(x, weight, bias, with_bias, groups, out, lo, hi, geo)
    else:
        for blk in numba.prange(n_blocks):
            b0, b1 = block_bounds(blk, n_blocks, b_n)
            _conv2d_fwd_block(x, weight, bias, with_bias, groups, out, b0, b1, geo)
    return (out,)


@numba.njit(cache=True, parallel=True)
def conv2d_bwd(
    g_out, x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out, into_x=None
):
    b_n = x.shape[0]
    o_n, cg, kh, kw = weight.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    need_gx = not _is_skipped(into_x, x)
    gx = np.empty_like(x) if into_x is None else into_x
    with_bias = has_bias and bias.size > 0
    n_blocks = _image_blocks(b_n, 2 * o_n * cg * kh * kw * oh * ow)
    # per-block partial sums of the weight and bias gradients (no two threads add into one)
    gw_parts = np.empty((n_blocks, o_n, cg * kh * kw), dtype=x.dtype)
    gb_parts = np.empty((n_blocks, o_n), dtype=np.float64)
    if n_blocks == 1:
        lo, hi = block_bounds(0, 1, b_n)  # variables: a literal 0 would compile the callee twice
        _conv2d_bwd_block(
            g_out, x, weight, groups, gx, need_gx, gw_parts[0], gb_parts[0], with_bias, lo, hi, geo
        )
    else:
        for blk in numba.prange(n_blocks):
            b0, b1 = block_bounds(blk, n_blocks, b_n)
            _conv2d_bwd_block(
                g_out, x, weight, groups, gx, need_gx, gw_parts[blk], gb_parts[blk], with_bias, b0, b1, geo
            )
    gw = np.empty_like(weight)
    _add_partials(gw_parts, gw)
    return gx, gw, _bias_sums(gb_parts, bias, with_bias)


@numba.njit(cache=True)
def _depthwise_fwd_images(x, weight, bias, with_bias, out, b0, b1, geo):
    """groups == C (filter o reads channel o // (O/C)): direct loops over the in-bounds row
    segments. Each output plane accumulates in a scratch plane, then is copied out: the inner
    loop vectorises better when LLVM knows its store target does not alias the input."""
    kh, kw, sh, sw, ph, pw, dh, dw = geo
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    o_n, oh, ow = out.shape[1], out.shape[2], out.shape[3]
    mult = o_n // c_n
    acc = np.empty((oh, ow), dtype=x.dtype)
    bf = bias.reshape(-1)
    for b in range(b0, b1):
        for o in range(o_n):
            src = x[b, o // mult]
            _zero(acc)
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
def _depthwise_bwd_images(g_out, x, weight, gx, need_gx, gw, gb, with_bias, b0, b1, geo):
    """Gradients of _depthwise_fwd_images for the images b0..b1-1: gx[b] (when need_gx), this
    block's weight-gradient sums into gw [O, kh*kw] and bias-gradient sums into gb (float64),
    both overwritten. Each input-gradient plane accumulates in a scratch plane (see above)."""
    kh, kw, sh, sw, ph, pw, dh, dw = geo
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    o_n, oh, ow = g_out.shape[1], g_out.shape[2], g_out.shape[3]
    mult = o_n // c_n
    gacc = np.empty((h, w), dtype=x.dtype)
    one = np.zeros(1)
    _zero(gw)
    _zero(gb)
    for b in range(b0, b1):
        for c in range(c_n):
            src = x[b, c]
            _zero(gacc)
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
                    _sum_rows(go.reshape(1, oh * ow), one)
                    gb[o] += one[0]
            if need_gx:
                _copy_flat(gacc, gx[b, c])


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
        out4 = conv2d_fwd(x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias)[0]
        return (out4.reshape(b_n, o_n, out4.shape[3]),)
    out4 = out.reshape(b_n, o_n, 1, out.shape[2])
    conv2d_fwd(x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, out4)
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
        gx, gw, gb = conv2d_bwd(
            g4, x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, g4
        )
        return gx.reshape(x.shape), gw.reshape(weight.shape), gb
    gx4 = into_x.reshape(b_n, c_n, 1, length) if into_x.size == x.size else into_x.reshape(0, 0, 0, 0)
    _, gw, gb = conv2d_bwd(
        g4, x4, w4, bias, one, stride, zero, padding, one, dilation, groups, has_bias, g4, gx4
    )
    return into_x, gw.reshape(weight.shape), gb


# --------------------------------------------------------------------------- conv_transpose2d
@numba.njit(cache=True)
def _convt_fwd_images(x, weight, bias, with_bias, groups, out, b0, b1, geo):
    """out[b] = conv_transpose(x[b]) for the images b0..b1-1: x's grid is the patch grid and
    the output image plays conv2d's input (GEMM into patch columns, then _col2im)."""
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    _, og, kh, kw = weight.shape
    cg, rows = c_n // groups, og * kh * kw
    o_n, p = out.shape[1], h * w
    w3 = weight.reshape(groups, cg, rows)
    x3 = x.reshape(x.shape[0], c_n, p)
    x4 = x.reshape(x.shape[0], groups, cg, p)
    out3 = out.reshape(out.shape[0], o_n, out.shape[2] * out.shape[3])
    bf = bias.reshape(-1)
    n = _chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    x_buf = np.empty(cg * n * p if n > 1 else 0, dtype=x.dtype)
    pad = _padded_plane(out.shape[2], out.shape[3], geo, x.dtype)
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
                _to_cols(x3, c0, m, g * cg, xg)
            np.dot(w3[g].T, xg, col3[g])
        for k in range(m):
            _col2im(col, k * p, out[c0 + k], geo, h, w, pad)
            if with_bias:
                _add_rows(out3[c0 + k], bf)


@numba.njit(cache=True)
def _convt_bwd_images(g_out, x, weight, groups, gx, need_gx, gw, gb, with_bias, b0, b1, geo):
    """Gradients of _convt_fwd_images for the images b0..b1-1: gx[b] (when need_gx), this
    block's weight- and bias-gradient sums into gw [C, og*kh*kw] and gb (float64), overwritten."""
    c_n, h, w = x.shape[1], x.shape[2], x.shape[3]
    _, og, kh, kw = weight.shape
    cg, rows = c_n // groups, og * kh * kw
    o_n, p = g_out.shape[1], h * w
    w3 = weight.reshape(groups, cg, rows)
    gw3 = gw.reshape(groups, cg, rows)
    x3 = x.reshape(x.shape[0], c_n, p)
    x4 = x.reshape(x.shape[0], groups, cg, p)
    go3 = g_out.reshape(g_out.shape[0], o_n, g_out.shape[2] * g_out.shape[3])
    n = _chunk_images(b1 - b0, groups * rows, p)
    n_chunks = (b1 - b0 + n - 1) // n
    col_buf = np.empty(groups * rows * n * p, dtype=x.dtype)
    x_buf = np.empty(cg * n * p if n > 1 else 0, dtype=x.dtype)
    res_buf = np.empty(cg * n * p if n > 1 and need_gx else 0, dtype=x.dtype)
    tmp = np.empty((cg, rows), dtype=x.dtype)
    pad = _padded_plane(g_out.shape[2], g_out.shape[3], geo, x.dtype)
    _zero(gw)
    _zero(gb)
    for ci in range(n_chunks):
        c0, c1 = block_bounds(ci, n_chunks, b1 - b0)
        c0, m = b0 + c0, c1 - c0
        col = col_buf[: groups * rows * m * p].reshape(groups * rows, m * p)
        for k in range(m):
            _im2col(g_out[c0 + k], col, k * p, geo, h, w, pad)
        col3 = col.reshape(groups, rows, m * p)
        for g in range(groups):
            if m == 1:
                xg = x4[c0, g]
            else:
                xg = x_buf[: cg * m * p].reshape(cg, m * p)
                _to_cols(x3, c0, m, g * cg, xg)
            np.dot(xg, col3[g].T, tmp)
            _add_into(gw3[g], tmp)
            if need_gx:
                if m == 1:
                    np.dot(w3[g], col3[g], gx[c0].reshape(groups, cg, p)[g])
                else:
                    res = res_buf[: cg * m * p].reshape(cg, m * p)
                    np.dot(w3[g], col3[g], res)
                    _from_cols(res, gx.reshape(gx.shape[0], c_n, p), c0, m, g * cg)
        if with_bias:
            for k in range(m):
                _sum_rows(go3[c0 + k], gb)


@numba.njit(cache=True, parallel=True)
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
    n_blocks = _image_blocks(b_n, c_n * og * kh * kw * h * w)
    if n_blocks == 1:
        lo, hi = block_bounds(0, 1, b_n)  # variables: a literal 0 would compile the callee twice
        _convt_fwd_images(x, weight, bias, with_bias, groups, out, lo, hi, geo)
    else:
        for blk in numba.prange(n_blocks):
            b0, b1 = block_bounds(blk, n_blocks, b_n)
            _convt_fwd_images(x, weight, bias, with_bias, groups, out, b0, b1, geo)
    return (out,)


@numba.njit(cache=True, parallel=True)
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
    need_gx = not _is_skipped(into_x, x)
    gx = np.empty_like(x) if into_x is None else into_x
    with_bias = has_bias and bias.size > 0
    n_blocks = _image_blocks(b_n, 2 * c_n * og * kh * kw * h * w)
    gw_parts = np.empty((n_blocks, c_n, og * kh * kw), dtype=x.dtype)
    gb_parts = np.empty((n_blocks, o_n), dtype=np.float64)
    if n_blocks == 1:
        lo, hi = block_bounds(0, 1, b_n)  # variables: a literal 0 would compile the callee twice
        _convt_bwd_images(
            g_out, x, weight, groups, gx, need_gx, gw_parts[0], gb_parts[0], with_bias, lo, hi, geo
        )
    else:
        for blk in numba.prange(n_blocks):
            b0, b1 = block_bounds(blk, n_blocks, b_n)
            _convt_bwd_images(
                g_out, x, weight, groups, gx, need_gx, gw_parts[blk], gb_parts[blk], with_bias, b0, b1, geo
            )
    gw = np.empty_like(weight)
    _add_partials(gw_parts, gw)
    return gx, gw, _bias_sums(gb_parts, bias, with_bias)
