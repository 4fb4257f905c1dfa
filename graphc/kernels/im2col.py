"""What the convolution kernels share (``conv``, ``conv_transpose``, ``depthwise``): the
im2col patch matrix and its adjoint, how a batch is split into thread blocks and GEMM chunks,
and the small loops that add a bias and sum the blocks' partial gradients.

A convolution here is im2col + GEMM over a chunk of images: ``im2col`` unrolls the patches of
each image into its column range of a ``[C*KH*KW, n*OH*OW]`` matrix, and one GEMM per channel
group covers the chunk. A chunk is one image when an image alone gives the GEMM
``_MIN_COLS`` columns (the GEMM then writes the output image in place, already in NCHW
layout); small images are grouped so that they do not pay one BLAS call each. Measured here
(CNN workload, 32x144 by 144x196 per image), a per-image GEMM runs at the same GFLOP/s as one
over several images.

Threads: the batch is split into one block of images per thread (`run_blocks` over blocks,
see `graphc.kernels.parallel`; each block is a serial loop calling single-threaded BLAS). The
weight and bias gradients sum over the batch, so each block writes its own partial sums and
the driver adds them after the parallel region (``add_partials``, ``bias_sums``). A batch with
little work stays one block (``image_blocks``). Scratch buffers are flat, allocated once per
block; a chunk uses a prefix reshaped to its size, which stays C-contiguous for BLAS.

Inner loops index views by the bare loop variable (``d = row[a:b]; d[z] = s[z]``): an index
like ``row[off + z]`` makes numba emit a negative-index wraparound test per element, which
stops LLVM from vectorising (measured: 1 ns per element against 0.05).

``geo = (kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)`` throughout.
"""

import numba
import numpy as np

from graphc.kernels.parallel import row_blocks

# Multiply-adds a block of images should have before it gets its own thread: below this
# (~20-40 us of work), waking the other thread costs about what it saves.
_MIN_BLOCK_WORK = 1 << 21
# Output pixels from which one image is a GEMM of its own, and the most elements a chunk's
# patch matrix may have (1 MiB in float32: larger buffers fall out of L2).
_MIN_COLS = 256
_COL_BUDGET = 1 << 18


# --------------------------------------------------------------------------- blocks and chunks
@numba.njit(cache=True)
def image_blocks(n_images, work_per_image):
    """How many blocks of images to split the batch into (one per thread at most)."""
    return row_blocks(n_images, max(1, _MIN_BLOCK_WORK // max(1, work_per_image)))


@numba.njit(cache=True)
def chunk_images(n_images, rows, cols_per_image):
    """Images per chunk: one when an image gives the GEMM _MIN_COLS columns, else as many as
    _COL_BUDGET allows (small images: the fewer BLAS calls the better; measured on the 8x8
    reference CNN, chunks of 4 images were 10% slower than the whole batch at once)."""
    if cols_per_image >= _MIN_COLS:
        return 1
    n = max(1, _COL_BUDGET // max(1, rows * cols_per_image))
    return max(1, min(n, n_images))


# --------------------------------------------------------------------------- patch matrices
@numba.njit(cache=True)
def padded_plane(h, w, geo, dtype):
    """Scratch for im2col/col2im: one image plane with its padding around it (zeros)."""
    return np.zeros((h + 2 * geo[4]) * (w + 2 * geo[5]), dtype=dtype)


@numba.njit(cache=True)
def im2col(src, col, off, geo, oh, ow, pad):
    """Patches of one image src [C, H, W] -> columns off .. off+oh*ow of col [C*kh*kw, *];
    (oh, ow) the patch grid. Each channel is first copied into the middle of the zero-padded
    plane ``pad`` (from padded_plane; its border must be zero, so col2im needs a plane of its
    own), so every patch row is a plain copy with no bounds test."""
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
def col2im(col, off, dst, geo, oh, ow, pad):
    """Adjoint of im2col: dst [C, H, W] = columns off .. off+oh*ow of col summed back onto
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
def to_cols(a3, b0, m, c0, dst):
    """a3[b0:b0+m, c0:c0+R] ([B, C, P]) -> dst [R, m*P], the GEMM layout of a chunk."""
    p = a3.shape[2]
    for k in range(m):
        for r in range(dst.shape[0]):
            d = dst[r, k * p : (k + 1) * p]
            s = a3[b0 + k, c0 + r]
            for q in range(p):
                d[q] = s[q]


@numba.njit(cache=True)
def from_cols(src, a3, b0, m, c0):
    """Inverse of to_cols: src [R, m*P] -> a3[b0:b0+m, c0:c0+R]."""
    p = a3.shape[2]
    for k in range(m):
        for r in range(src.shape[0]):
            d = a3[b0 + k, c0 + r]
            s = src[r, k * p : (k + 1) * p]
            for q in range(p):
                d[q] = s[q]


# --------------------------------------------------------------------------- bias and sums
@numba.njit(cache=True)
def add_rows(a, v):
    """a [R, P] += v[r] along each row r (the bias)."""
    for r in range(a.shape[0]):
        bv = v[r]
        d = a[r]
        for q in range(a.shape[1]):
            d[q] += bv


@numba.njit(cache=True, fastmath=True)
def sum_rows(a, acc):
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
def zero(a):
    """a[...] = 0 for a C-contiguous array. Here and in the kernels, explicit loops instead of
    array expressions (``a[:] = 0``, ``a += b``): each of those cost seconds of compile time in
    every kernel that inlines it (measured: one ``gw += tmp`` made conv2d_bwd's helper 3.5 s
    slower to compile)."""
    f = a.reshape(-1)
    for q in range(f.size):
        f[q] = 0.0


@numba.njit(cache=True)
def add_partials(parts, out):
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
def bias_sums(parts, bias, with_bias):
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
def is_skipped(into, like):
    """A zero-size destination for a non-empty gradient: the caller does not want it."""
    return into is not None and into.size == 0 and like.size > 0
