"""Convolution kernels: conv1d, conv2d, conv_transpose2d (PyTorch layouts and semantics).

Every convolution is im2col + GEMM. ``_im2col`` unrolls input patches of a chunk of images
into a ``[C*KH*KW, n*OH*OW]`` matrix, so one GEMM per group covers the whole chunk (small
images would otherwise pay one BLAS call per image). Chunks keep the patch matrix under
``_COL_BUDGET`` elements. Channel groups are contiguous row blocks of that matrix, so it is
viewed as ``[groups, rows, cols]`` and indexed per group, which keeps every GEMM operand
C-contiguous (a row slice would be typed as 'A' layout by numba).

Patch and result buffers are allocated once per call and reused across chunks, and GEMMs
write into them (``np.dot(a, b, out)``).

Depthwise convolution (one input channel per filter, groups > 1) skips im2col: a [1, K]
times [K, n*P] GEMM per channel is all overhead, so it runs as direct loops whose inner loop
covers a precomputed in-bounds column range (no per-element padding test).

conv_transpose2d is the adjoint of conv2d: its forward is conv2d's input-gradient path
(GEMM then ``_col2im``), its backward is conv2d's forward path. conv1d is conv2d with H=1.
"""

import numba
import numpy as np

# Elements of the patch matrix per chunk (1 MiB in float32). Measured on this machine kind:
# a 2**22 budget made conv2d fwd+bwd 4x slower than 2**18 (fresh multi-MiB buffers page-fault
# and fall out of L2); 2**16 is slower again (GEMMs too thin).
_COL_BUDGET = 1 << 18


@numba.njit(cache=True)
def _chunk(n_batch, rows, cols_per_image):
    return max(1, min(n_batch, _COL_BUDGET // max(1, rows * cols_per_image)))


@numba.njit(cache=True)
def _tap_tables(ih, iw, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Index tables of the patch geometry, shared by every image and channel:
    ``fwd[t, p]``: flat input index ``iy*iw + ix`` that output ``p = y*ow + x`` reads through
    tap ``t = i*kw + j``, or ``ih*iw`` (a zero slot past the plane) where it reads padding;
    ``inv[t, q]``: the output ``p`` that reads input ``q`` through tap ``t``, or ``oh*ow``
    (a zero slot) if none does (each tap reads an input pixel at most once)."""
    kk = kh * kw
    fwd = np.full((kk, oh * ow), ih * iw, dtype=np.int64)
    inv = np.full((kk, ih * iw), oh * ow, dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            t = i * kw + j
            for y in range(oh):
                iy = y * sh - ph + i * dh
                if iy < 0 or iy >= ih:
                    continue
                for x in range(ow):
                    ix = x * sw - pw + j * dw
                    if 0 <= ix < iw:
                        fwd[t, y * ow + x] = iy * iw + ix
                        inv[t, iy * iw + ix] = y * ow + x
    return fwd, inv


@numba.njit(cache=True)
def _im2col(img, b0, n, tab, col):
    """Patches of img[b0:b0+n] -> col [C*kh*kw, n*oh*ow] through the ``fwd`` tap table
    (every entry written, so col can be a reused buffer). Each image plane is copied into a
    scratch plane with a trailing zero slot, so padding needs no branch: a table lookup
    loop per tap, far cheaper than per-row slicing when images are small."""
    b_all, c_n, ih, iw = img.shape
    hw = ih * iw
    img3 = img.reshape(b_all, c_n, hw)
    kk, p = tab.shape
    plane = np.zeros(hw + 1, dtype=img.dtype)
    for bl in range(n):
        base = bl * p
        for c in range(c_n):
            src = img3[b0 + bl, c]
            for q in range(hw):
                plane[q] = src[q]
            for t in range(kk):
                crow = col[c * kk + t]
                for q in range(p):
                    crow[base + q] = plane[tab[t, q]]


@numba.njit(cache=True)
def _col2im(col, img, b0, n, inv):
    """Adjoint of _im2col: img[b0:b0+n] = the patch columns summed back onto their input
    pixels (overwrites, no zeroing pass). Gather form through the ``inv`` tap table: each
    pixel sums its taps in a fixed order, reading a scratch copy of the column segment with
    a trailing zero slot."""
    b_all, c_n, ih, iw = img.shape
    hw = ih * iw
    img3 = img.reshape(b_all, c_n, hw)
    kk = inv.shape[0]
    p = col.shape[1] // n
    seg = np.zeros(p + 1, dtype=img.dtype)
    acc = np.empty(hw, dtype=img.dtype)
    for bl in range(n):
        base = bl * p
        for c in range(c_n):
            for t in range(kk):
                crow = col[c * kk + t]
                for q in range(p):
                    seg[q] = crow[base + q]
                if t == 0:
                    for q in range(hw):
                        acc[q] = seg[inv[t, q]]
                else:
                    for q in range(hw):
                        acc[q] += seg[inv[t, q]]
            dst = img3[b0 + bl, c]
            for q in range(hw):
                dst[q] = acc[q]


@numba.njit(cache=True)
def _gather(a, b0, n, c0, cn):
    """a[b0:b0+n, c0:c0+cn] (4-D) -> [cn, n*H*W], the GEMM layout of a channel block."""
    p = a.shape[2] * a.shape[3]
    a3 = a.reshape(a.shape[0], a.shape[1], p)
    res = np.empty((cn, n * p), dtype=a.dtype)
    for c in range(cn):
        for bl in range(n):
            src = a3[b0 + bl, c0 + c]
            base = bl * p
            for q in range(p):
                res[c, base + q] = src[q]
    return res


@numba.njit(cache=True)
def _gather_sum(a, b0, n, c0, cn, sums):
    """_gather, also adding each channel's sum to sums[c0 + c] (float64): the bias gradient
    in the same pass."""
    p = a.shape[2] * a.shape[3]
    a3 = a.reshape(a.shape[0], a.shape[1], p)
    res = np.empty((cn, n * p), dtype=a.dtype)
    for c in range(cn):
        s = 0.0
        for bl in range(n):
            src = a3[b0 + bl, c0 + c]
            base = bl * p
            for q in range(p):
                v = src[q]
                res[c, base + q] = v
                s += v
        sums[c0 + c] += s
    return res


@numba.njit(cache=True)
def _scatter(res, a, b0, n, c0, bias, has_bias):
    """Inverse of _gather: write [cn, n*H*W] into a[b0:b0+n, c0:c0+cn], adding
    bias[c0 + c] when has_bias (the bias in the same pass)."""
    p = a.shape[2] * a.shape[3]
    a3 = a.reshape(a.shape[0], a.shape[1], p)
    bf = bias.reshape(-1)
    for c in range(res.shape[0]):
        for bl in range(n):
            dst = a3[b0 + bl, c0 + c]
            base = bl * p
            if has_bias:
                bv = bf[c0 + c]
                for q in range(p):
                    dst[q] = res[c, base + q] + bv
            else:
                for q in range(p):
                    dst[q] = res[c, base + q]


@numba.njit(cache=True)
def _copy_flat(src, dst):
    """dst[...] = src for C-contiguous arrays of one size (a loop: numba's slice assignment
    between arrays is several times slower)."""
    s = src.reshape(-1)
    d = dst.reshape(-1)
    for k in range(s.size):
        d[k] = s[k]


@numba.njit(cache=True)
def _add_bias(out, bias):
    bf = bias.reshape(-1)
    for b in range(out.shape[0]):
        for o in range(out.shape[1]):
            out[b, o] += bf[o]


@numba.njit(cache=True)
def _bias_grad(g_out, bias, has_bias):
    gb = np.zeros_like(bias)
    if has_bias and bias.size > 0:
        gbf = gb.reshape(-1)
        for b in range(g_out.shape[0]):
            for o in range(g_out.shape[1]):
                gbf[o] += g_out[b, o].sum()
    return gb


# --------------------------------------------------------------------------- conv2d
@numba.njit(cache=True)
def _conv2d_out_size(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
    oh = (h + 2 * pad_h - dil_h * (kh - 1) - 1) // stride_h + 1
    ow = (w + 2 * pad_w - dil_w * (kw - 1) - 1) // stride_w + 1
    return oh, ow


@numba.njit(cache=True)
def conv2d_fwd(x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out=None):
    b_n, c_n, h, w = x.shape
    o_n, cg, kh, kw = weight.shape
    oh, ow = _conv2d_out_size(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w)
    if cg == 1 and groups > 1:
        # depthwise: one input channel per filter is too little work per GEMM; direct loops
        res = _depthwise_fwd(x, weight, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, oh, ow, out)
        if has_bias and bias.size > 0:
            _add_bias(res, bias)
        return (res,)
    else:
        og = o_n // groups
        rows = cg * kh * kw
        w3 = weight.reshape(groups, og, rows)
        if out is None:
            out = np.empty((b_n, o_n, oh, ow), dtype=x.dtype)
        tab, _ = _tap_tables(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, oh, ow)
        with_bias = has_bias and bias.size > 0
        nb = _chunk(b_n, c_n * kh * kw, oh * ow)
        n_buf = 0
        col = np.empty((0, 0), dtype=x.dtype)
        res = np.empty((0, 0), dtype=x.dtype)
        for b0 in range(0, b_n, nb):
            n = min(nb, b_n - b0)
            if n != n_buf:  # buffers are reused across chunks (only the last may differ)
                col = np.empty((c_n * kh * kw, n * oh * ow), dtype=x.dtype)
                res = np.empty((og, n * oh * ow), dtype=x.dtype)
                n_buf = n
            _im2col(x, b0, n, tab, col)
            col3 = col.reshape(groups, rows, n * oh * ow)
            for g in range(groups):
                np.dot(w3[g], col3[g], res)
                _scatter(res, out, b0, n, g * og, bias, with_bias)
        return (out,)


@numba.njit(cache=True)
def conv2d_bwd(
    g_out, x, weight, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups, has_bias, out, into_x=None
):
    b_n, c_n, h, w = x.shape
    o_n, cg, kh, kw = weight.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    if cg == 1 and groups > 1:
        gx, gw = _depthwise_bwd(g_out, x, weight, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, into_x)
        return gx, gw, _bias_grad(g_out, bias, has_bias)
    og = o_n // groups
    rows = cg * kh * kw
    w3 = weight.reshape(groups, og, rows)
    gx = np.empty_like(x) if into_x is None else into_x
    # (the first chunk's GEMM writes it; zeros only for an empty batch)
    gw3 = np.empty((groups, og, rows), dtype=x.dtype) if b_n > 0 else np.zeros((groups, og, rows), dtype=x.dtype)
    with_bias = has_bias and bias.size > 0
    gb_acc = np.zeros(o_n, dtype=np.float64)
    tab, inv = _tap_tables(h, w, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, oh, ow)
    nb = _chunk(b_n, c_n * kh * kw, oh * ow)
    n_buf = 0
    col = np.empty((0, 0), dtype=x.dtype)
    gcol = np.empty((0, 0), dtype=x.dtype)
    for b0 in range(0, b_n, nb):
        n = min(nb, b_n - b0)
        if n != n_buf:
            col = np.empty((c_n * kh * kw, n * oh * ow), dtype=x.dtype)
            gcol = np.empty((c_n * kh * kw, n * oh * ow), dtype=x.dtype)
            n_buf = n
        _im2col(x, b0, n, tab, col)
        col3 = col.reshape(groups, rows, n * oh * ow)
        gcol3 = gcol.reshape(groups, rows, n * oh * ow)
        for g in range(groups):
            if with_bias:
                go = _gather_sum(g_out, b0, n, g * og, og, gb_acc)
            else:
                go = _gather(g_out, b0, n, g * og, og)
            if b0 == 0:
                np.dot(go, col3[g].T, gw3[g])
            else:
                gw3[g] += np.dot(go, col3[g].T)
            np.dot(w3[g].T, go, gcol3[g])
        _col2im(gcol, gx, b0, n, inv)
    gb = np.zeros_like(bias)
    if with_bias:
        gbf = gb.reshape(-1)
        for o in range(o_n):
            gbf[o] = gb_acc[o]
    return gx, gw3.reshape(weight.shape), gb


@numba.njit(cache=True)
def _depthwise_fwd(x, weight, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, oh, ow, out=None):
    """groups == C (filter o reads channel o // (O/C)): direct loops, inner loop over a
    precomputed in-bounds x range so it has no branches. Accumulates in a fresh buffer,
    copied into ``out`` when given (see _depthwise_bwd for why)."""
    b_n, c_n, h, w = x.shape
    o_n, _, kh, kw = weight.shape
    mult = o_n // c_n
    res = np.zeros((b_n, o_n, oh, ow), dtype=x.dtype)
    for j in range(kw):
        x_lo = min(ow, max(0, -((j * dil_w - pad_w) // stride_w)))
        x_hi = max(x_lo, min(ow, (w - 1 + pad_w - j * dil_w) // stride_w + 1))
        off = j * dil_w - pad_w
        for b in range(b_n):
            for o in range(o_n):
                src = x[b, o // mult]
                dst = res[b, o]
                for i in range(kh):
                    wv = weight[o, 0, i, j]
                    for y in range(oh):
                        iy = y * stride_h - pad_h + i * dil_h
                        if 0 <= iy < h:
                            for z in range(x_lo, x_hi):
                                dst[y, z] += wv * src[iy, z * stride_w + off]
    if out is None:
        return res
    _copy_flat(res, out)
    return out


@numba.njit(cache=True)
def _depthwise_bwd(g_out, x, weight, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, into_x=None):
    """The input gradient always accumulates in a fresh buffer, copied into ``into_x`` when
    given: the fused loop below runs 5-15% slower when LLVM cannot rule out that its store
    target aliases g_out or x (a fresh allocation is known not to), far more than the copy."""
    b_n, c_n, h, w = x.shape
    o_n, _, kh, kw = weight.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    mult = o_n // c_n
    gx = np.zeros_like(x)
    gw = np.zeros_like(weight)
    for j in range(kw):
        x_lo = min(ow, max(0, -((j * dil_w - pad_w) // stride_w)))
        x_hi = max(x_lo, min(ow, (w - 1 + pad_w - j * dil_w) // stride_w + 1))
        off = j * dil_w - pad_w
        for b in range(b_n):
            for o in range(o_n):
                src = x[b, o // mult]
                gsrc = gx[b, o // mult]
                go = g_out[b, o]
                for i in range(kh):
                    wv = weight[o, 0, i, j]
                    acc = 0.0
                    for y in range(oh):
                        iy = y * stride_h - pad_h + i * dil_h
                        if 0 <= iy < h:
                            for z in range(x_lo, x_hi):
                                gsrc[iy, z * stride_w + off] += wv * go[y, z]
                                acc += go[y, z] * src[iy, z * stride_w + off]
                    gw[o, 0, i, j] += acc
    if into_x is None:
        return gx, gw
    _copy_flat(gx, into_x)
    return into_x, gw


# --------------------------------------------------------------------------- conv1d
@numba.njit(cache=True)
def conv1d_fwd(x, weight, bias, stride, padding, dilation, groups, has_bias, out=None):
    b_n, c_n, length = x.shape
    o_n, cg, k = weight.shape
    x4 = x.reshape(b_n, c_n, 1, length)
    w4 = weight.reshape(o_n, cg, 1, k)
    if out is None:
        out4 = conv2d_fwd(x4, w4, bias, 1, stride, 0, padding, 1, dilation, groups, has_bias)[0]
        return (out4.reshape(b_n, o_n, out4.shape[3]),)
    out4 = out.reshape(b_n, o_n, 1, out.shape[2])
    conv2d_fwd(x4, w4, bias, 1, stride, 0, padding, 1, dilation, groups, has_bias, out4)
    return (out,)


@numba.njit(cache=True)
def conv1d_bwd(g_out, x, weight, bias, stride, padding, dilation, groups, has_bias, out, into_x=None):
    b_n, c_n, length = x.shape
    o_n, cg, k = weight.shape
    x4 = x.reshape(b_n, c_n, 1, length)
    w4 = weight.reshape(o_n, cg, 1, k)
    g4 = g_out.reshape(b_n, o_n, 1, g_out.shape[2])
    if into_x is None:
        gx, gw, gb = conv2d_bwd(g4, x4, w4, bias, 1, stride, 0, padding, 1, dilation, groups, has_bias, g4)
        return gx.reshape(x.shape), gw.reshape(weight.shape), gb
    gx4 = into_x.reshape(b_n, c_n, 1, length)
    _, gw, gb = conv2d_bwd(g4, x4, w4, bias, 1, stride, 0, padding, 1, dilation, groups, has_bias, g4, gx4)
    return into_x, gw.reshape(weight.shape), gb


# --------------------------------------------------------------------------- conv_transpose2d
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
    cg = c_n // groups
    o_n = og * groups
    oh = (h - 1) * stride_h - 2 * pad_h + dil_h * (kh - 1) + out_pad_h + 1
    ow = (w - 1) * stride_w - 2 * pad_w + dil_w * (kw - 1) + out_pad_w + 1
    rows = og * kh * kw
    w3 = weight.reshape(groups, cg, rows)
    if out is None:
        out = np.empty((b_n, o_n, oh, ow), dtype=x.dtype)
    # The output image plays the role of conv2d's input; x's grid is the patch grid.
    _, inv = _tap_tables(oh, ow, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, h, w)
    nb = _chunk(b_n, o_n * kh * kw, h * w)
    n_buf = 0
    col = np.empty((0, 0), dtype=x.dtype)
    for b0 in range(0, b_n, nb):
        n = min(nb, b_n - b0)
        if n != n_buf:
            col = np.empty((o_n * kh * kw, n * h * w), dtype=x.dtype)
            n_buf = n
        col3 = col.reshape(groups, rows, n * h * w)
        for g in range(groups):
            np.dot(w3[g].T, _gather(x, b0, n, g * cg, cg), col3[g])
        _col2im(col, out, b0, n, inv)
    if has_bias and bias.size > 0:
        _add_bias(out, bias)
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
    cg = c_n // groups
    o_n = og * groups
    rows = og * kh * kw
    w3 = weight.reshape(groups, cg, rows)
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    gw3 = np.zeros((groups, cg, rows), dtype=x.dtype)
    oh, ow = g_out.shape[2], g_out.shape[3]
    tab, _ = _tap_tables(oh, ow, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, h, w)
    nb = _chunk(b_n, o_n * kh * kw, h * w)
    n_buf = 0
    col = np.empty((0, 0), dtype=x.dtype)
    res = np.empty((0, 0), dtype=x.dtype)
    for b0 in range(0, b_n, nb):
        n = min(nb, b_n - b0)
        if n != n_buf:
            col = np.empty((o_n * kh * kw, n * h * w), dtype=x.dtype)
            res = np.empty((cg, n * h * w), dtype=x.dtype)
            n_buf = n
        _im2col(g_out, b0, n, tab, col)
        col3 = col.reshape(groups, rows, n * h * w)
        for g in range(groups):
            xg = _gather(x, b0, n, g * cg, cg)
            gw3[g] += np.dot(xg, col3[g].T)
            np.dot(w3[g], col3[g], res)
            _scatter(res, gx, b0, n, g * cg, bias, False)
    return gx, gw3.reshape(weight.shape), _bias_grad(g_out, bias, has_bias)
