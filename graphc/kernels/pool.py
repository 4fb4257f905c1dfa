"""Pooling and resampling kernels: maxpool2d, avgpool2d, global_avgpool, upsample (nearest).

Output size follows torch with ceil_mode=False: ``(H + 2*pad - k) // stride + 1``.
maxpool treats padding as -inf and saves the argmax (flat ``h*W + w`` index into the input
plane, int64) so the backward is a scatter. avgpool uses count_include_pad=True (torch's
default): with ceil_mode=False every window lies inside the padded image, so the divisor is
always ``kh*kw``.

maxpool and avgpool split the B*C image planes into one block per thread (`run_blocks`,
see `graphc.kernels.parallel`); planes are independent, so there are no shared sums.
"""

import numba
import numpy as np

from graphc.kernels.parallel import block_bounds, row_blocks, run_blocks

# Input elements a block of planes should have before it gets its own thread (a pooling
# pass costs ~0.3-0.5 ns per element: below this, waking a thread costs what it saves).
_MIN_BLOCK_ELEMS = 1 << 16


@numba.njit(cache=True)
def _plane_blocks(planes, plane_size):
    """How many blocks of image planes to split the work into (one per thread at most)."""
    return row_blocks(planes, max(1, _MIN_BLOCK_ELEMS // max(1, plane_size)))


@numba.njit(cache=True)
def _zeroed(x, into):
    """A zero gradient buffer shaped like x: ``into`` cleared, or a fresh one when None."""
    if into is None:
        return np.zeros_like(x)
    into.reshape(-1)[:] = 0.0  # (faster than fill() in numba)
    return into


@numba.njit(cache=True)
def _out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


# --------------------------------------------------------------------------- maxpool2d
@numba.njit(cache=True)
def _maxpool_2x2(x3, sh, sw, out3, arg3, p0, p1):
    """Planes p0..p1-1 of a 2x2 max pool without padding (the common case): every window lies
    inside the plane, so the window's first element seeds the running max (the general loop's
    selection rule, so NaN handling is identical)."""
    w = x3.shape[2]
    oh, ow = out3.shape[1], out3.shape[2]
    for pc in range(p0, p1):
        plane = x3[pc]
        for y in range(oh):
            r0 = plane[y * sh]
            r1 = plane[y * sh + 1]
            o = out3[pc, y]
            a = arg3[pc, y]
            k0 = y * sh * w
            for z in range(ow):
                best = r0[z * sw]
                best_i = k0 + z * sw
                v = r0[z * sw + 1]
                up = v > best
                best = v if up else best
                best_i = k0 + z * sw + 1 if up else best_i
                v = r1[z * sw]
                up = v > best
                best = v if up else best
                best_i = k0 + w + z * sw if up else best_i
                v = r1[z * sw + 1]
                up = v > best
                best = v if up else best
                best_i = k0 + w + z * sw + 1 if up else best_i
                o[z] = best
                a[z] = best_i


@numba.njit(cache=True)
def _maxpool_valid(x3, kh, kw, sh, sw, out3, arg3, p0, p1):
    """Planes p0..p1-1 of a max pool without padding (any window): as _maxpool_2x2."""
    w = x3.shape[2]
    oh, ow = out3.shape[1], out3.shape[2]
    for pc in range(p0, p1):
        plane = x3[pc]
        for y in range(oh):
            o = out3[pc, y]
            a = arg3[pc, y]
            for z in range(ow):
                k0 = y * sh * w + z * sw
                best = plane[y * sh, z * sw]
                best_i = k0
                for i in range(kh):
                    row = plane[y * sh + i]
                    for j in range(kw):
                        v = row[z * sw + j]
                        if v > best:
                            best = v
                            best_i = k0 + i * w + j
                o[z] = best
                a[z] = best_i


@numba.njit(cache=True)
def _maxpool_padded(x3, kh, kw, sh, sw, ph, pw, out3, arg3, p0, p1):
    """Planes p0..p1-1 of a max pool with padding (treated as -inf): windows are clipped."""
    h, w = x3.shape[1], x3.shape[2]
    oh, ow = out3.shape[1], out3.shape[2]
    for pc in range(p0, p1):
        plane = x3[pc]
        for y in range(oh):
            y0 = y * sh - ph
            for z in range(ow):
                z0 = z * sw - pw
                best = -np.inf
                best_i = -1
                for i in range(max(y0, 0), min(y0 + kh, h)):
                    for j in range(max(z0, 0), min(z0 + kw, w)):
                        v = plane[i, j]
                        # `v > best or best_i < 0` keeps a NaN or -inf input selectable.
                        if v > best or best_i < 0:
                            best = v
                            best_i = i * w + j
                out3[pc, y, z] = best
                arg3[pc, y, z] = best_i


@numba.njit(cache=True)
def _maxpool_planes(blk, n_blocks, x3, kh, kw, sh, sw, ph, pw, out3, arg3):
    p0, p1 = block_bounds(blk, n_blocks, x3.shape[0])
    if ph == 0 and pw == 0 and kh >= 1 and kw >= 1:
        if kh == 2 and kw == 2:
            _maxpool_2x2(x3, sh, sw, out3, arg3, p0, p1)
        else:
            _maxpool_valid(x3, kh, kw, sh, sw, out3, arg3, p0, p1)
    else:
        _maxpool_padded(x3, kh, kw, sh, sw, ph, pw, out3, arg3, p0, p1)


@numba.njit(cache=True)
def maxpool2d_fwd(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out=None):
    b_n, c_n, h, w = x.shape
    oh = _out_size(h, kh, stride_h, pad_h)
    ow = _out_size(w, kw, stride_w, pad_w)
    if out is None:
        out = np.empty((b_n, c_n, oh, ow), dtype=x.dtype)
    arg = np.empty((b_n, c_n, oh, ow), dtype=np.int64)
    planes = b_n * c_n
    x3 = x.reshape(planes, h, w)
    out3 = out.reshape(planes, oh, ow)
    arg3 = arg.reshape(planes, oh, ow)
    n_blocks = _plane_blocks(planes, h * w)
    run_blocks(
        _maxpool_planes, n_blocks, (n_blocks, x3, kh, kw, stride_h, stride_w, pad_h, pad_w, out3, arg3)
    )
    return out, arg


@numba.njit(cache=True)
def _maxpool_bwd_planes(blk, n_blocks, g2, arg2, gx2):
    """Planes p0..p1-1 ([planes, pixels] views): each input-gradient plane zeroed, then every
    output's gradient added at its saved argmax (windows may overlap)."""
    p0, p1 = block_bounds(blk, n_blocks, g2.shape[0])
    for pc in range(p0, p1):
        gp = gx2[pc]
        for q in range(gp.size):
            gp[q] = 0.0
        gs = g2[pc]
        src = arg2[pc]
        for k in range(gs.size):
            i = src[k]
            if i >= 0:
                gp[i] += gs[k]


@numba.njit(cache=True)
def maxpool2d_bwd(g_out, x, kh, kw, stride_h, stride_w, pad_h, pad_w, saved0, out, into_x=None):
    b_n, c_n, h, w = x.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    gx = np.empty_like(x) if into_x is None else into_x
    planes = b_n * c_n
    g2 = g_out.reshape(planes, oh * ow)
    arg2 = saved0.reshape(planes, oh * ow)
    gx2 = gx.reshape(planes, h * w)
    n_blocks = _plane_blocks(planes, h * w)
    run_blocks(_maxpool_bwd_planes, n_blocks, (n_blocks, g2, arg2, gx2))
    return (gx,)


# --------------------------------------------------------------------------- avgpool2d
@numba.njit(cache=True)
def _avgpool_planes(blk, n_blocks, x3, kh, kw, sh, sw, ph, pw, out3):
    p0, p1 = block_bounds(blk, n_blocks, x3.shape[0])
    h, w = x3.shape[1], x3.shape[2]
    oh, ow = out3.shape[1], out3.shape[2]
    inv = 1.0 / (kh * kw)
    for pc in range(p0, p1):
        plane = x3[pc]
        for y in range(oh):
            y0 = y * sh - ph
            for z in range(ow):
                z0 = z * sw - pw
                s = 0.0
                for i in range(max(y0, 0), min(y0 + kh, h)):
                    for j in range(max(z0, 0), min(z0 + kw, w)):
                        s += plane[i, j]
                out3[pc, y, z] = s * inv


@numba.njit(cache=True)
def avgpool2d_fwd(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out=None):
    b_n, c_n, h, w = x.shape
    oh = _out_size(h, kh, stride_h, pad_h)
    ow = _out_size(w, kw, stride_w, pad_w)
    if out is None:
        out = np.empty((b_n, c_n, oh, ow), dtype=x.dtype)
    planes = b_n * c_n
    x3 = x.reshape(planes, h, w)
    out3 = out.reshape(planes, oh, ow)
    n_blocks = _plane_blocks(planes, h * w)
    run_blocks(_avgpool_planes, n_blocks, (n_blocks, x3, kh, kw, stride_h, stride_w, pad_h, pad_w, out3))
    return (out,)


@numba.njit(cache=True)
def _avgpool_bwd_planes(blk, n_blocks, g3, kh, kw, sh, sw, ph, pw, gx3):
    p0, p1 = block_bounds(blk, n_blocks, g3.shape[0])
    h, w = gx3.shape[1], gx3.shape[2]
    oh, ow = g3.shape[1], g3.shape[2]
    inv = 1.0 / (kh * kw)
    for pc in range(p0, p1):
        gplane = gx3[pc]
        flat = gplane.reshape(-1)
        for q in range(flat.size):
            flat[q] = 0.0
        for y in range(oh):
            y0 = y * sh - ph
            for z in range(ow):
                z0 = z * sw - pw
                gv = g3[pc, y, z] * inv
                for i in range(max(y0, 0), min(y0 + kh, h)):
                    for j in range(max(z0, 0), min(z0 + kw, w)):
                        gplane[i, j] += gv


@numba.njit(cache=True)
def avgpool2d_bwd(g_out, x, kh, kw, stride_h, stride_w, pad_h, pad_w, out, into_x=None):
    b_n, c_n, h, w = x.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    gx = np.empty_like(x) if into_x is None else into_x
    planes = b_n * c_n
    g3 = g_out.reshape(planes, oh, ow)
    gx3 = gx.reshape(planes, h, w)
    n_blocks = _plane_blocks(planes, h * w)
    run_blocks(_avgpool_bwd_planes, n_blocks, (n_blocks, g3, kh, kw, stride_h, stride_w, pad_h, pad_w, gx3))
    return (gx,)


# --------------------------------------------------------------------------- global_avgpool
@numba.njit(cache=True)
def global_avgpool_fwd(x, out=None):
    b_n, c_n, h, w = x.shape
    x3 = x.reshape(b_n, c_n, h * w)
    if out is None:
        out = np.empty((b_n, c_n), dtype=x.dtype)
    inv = 1.0 / (h * w)
    for b in range(b_n):
        for c in range(c_n):
            s = 0.0
            for p in range(h * w):
                s += x3[b, c, p]
            out[b, c] = s * inv
    return (out,)


@numba.njit(cache=True)
def global_avgpool_bwd(g_out, x, out, into_x=None):
    b_n, c_n, h, w = x.shape
    if into_x is None:
        into_x = np.empty_like(x)
    gx = into_x
    inv = 1.0 / (h * w)
    for b in range(b_n):
        for c in range(c_n):
            gx[b, c] = g_out[b, c] * inv
    return (gx,)


# --------------------------------------------------------------------------- upsample
@numba.njit(cache=True)
def upsample_fwd(x, scale, out=None):
    b_n, c_n, h, w = x.shape
    if out is None:
        out = np.empty((b_n, c_n, h * scale, w * scale), dtype=x.dtype)
    for b in range(b_n):
        for c in range(c_n):
            for y in range(h * scale):
                for z in range(w * scale):
                    out[b, c, y, z] = x[b, c, y // scale, z // scale]
    return (out,)


@numba.njit(cache=True)
def upsample_bwd(g_out, x, scale, out, into_x=None):
    b_n, c_n, h, w = x.shape
    gx = _zeroed(x, into_x)
    for b in range(b_n):
        for c in range(c_n):
            for y in range(h * scale):
                for z in range(w * scale):
                    gx[b, c, y // scale, z // scale] += g_out[b, c, y, z]
    return (gx,)
