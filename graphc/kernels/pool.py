"""Pooling and resampling kernels: maxpool2d, avgpool2d, global_avgpool, upsample (nearest).

Output size follows torch with ceil_mode=False: ``(H + 2*pad - k) // stride + 1``.
maxpool treats padding as -inf and saves the argmax (flat ``h*W + w`` index into the input
plane, int64) so the backward is a scatter. avgpool uses count_include_pad=True (torch's
default): with ceil_mode=False every window lies inside the padded image, so the divisor is
always ``kh*kw``.
"""

import numba
import numpy as np


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
def _maxpool_valid(x, kh, kw, sh, sw, oh, ow, out, arg):
    """maxpool without padding: every window lies inside the plane, so there is no
    clipping and no -inf start; the window's first element seeds the running max (the
    general loop's selection rule, so NaN handling is identical)."""
    b_n, c_n, h, w = x.shape
    x3 = x.reshape(b_n * c_n, h * w)
    o3 = out.reshape(b_n * c_n, oh * ow)
    a3 = arg.reshape(b_n * c_n, oh * ow)
    for pc in range(b_n * c_n):
        plane = x3[pc]
        op = o3[pc]
        ap = a3[pc]
        for y in range(oh):
            r0 = y * sh * w
            for z in range(ow):
                k0 = r0 + z * sw
                best = plane[k0]
                best_i = k0
                for i in range(kh):
                    for j in range(kw):
                        v = plane[k0 + i * w + j]
                        if v > best:
                            best = v
                            best_i = k0 + i * w + j
                op[y * ow + z] = best
                ap[y * ow + z] = best_i


@numba.njit(cache=True)
def _maxpool_2x2(x, sh, sw, oh, ow, out, arg):
    """_maxpool_valid unrolled for 2x2 windows (the common case)."""
    b_n, c_n, h, w = x.shape
    x3 = x.reshape(b_n * c_n, h * w)
    o3 = out.reshape(b_n * c_n, oh * ow)
    a3 = arg.reshape(b_n * c_n, oh * ow)
    for pc in range(b_n * c_n):
        plane = x3[pc]
        op = o3[pc]
        ap = a3[pc]
        for y in range(oh):
            r0 = y * sh * w
            for z in range(ow):
                k0 = r0 + z * sw
                best = plane[k0]
                best_i = k0
                v = plane[k0 + 1]
                up = v > best
                best = v if up else best
                best_i = k0 + 1 if up else best_i
                v = plane[k0 + w]
                up = v > best
                best = v if up else best
                best_i = k0 + w if up else best_i
                v = plane[k0 + w + 1]
                up = v > best
                best = v if up else best
                best_i = k0 + w + 1 if up else best_i
                op[y * ow + z] = best
                ap[y * ow + z] = best_i


@numba.njit(cache=True)
def maxpool2d_fwd(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out=None):
    b_n, c_n, h, w = x.shape
    oh = _out_size(h, kh, stride_h, pad_h)
    ow = _out_size(w, kw, stride_w, pad_w)
    if out is None:
        out = np.empty((b_n, c_n, oh, ow), dtype=x.dtype)
    arg = np.empty((b_n, c_n, oh, ow), dtype=np.int64)
    if pad_h == 0 and pad_w == 0 and kh >= 1 and kw >= 1:
        if kh == 2 and kw == 2:
            _maxpool_2x2(x, stride_h, stride_w, oh, ow, out, arg)
        else:
            _maxpool_valid(x, kh, kw, stride_h, stride_w, oh, ow, out, arg)
        return out, arg
    for b in range(b_n):
        for c in range(c_n):
            plane = x[b, c]
            for y in range(oh):
                y0 = y * stride_h - pad_h
                for z in range(ow):
                    z0 = z * stride_w - pad_w
                    best = -np.inf
                    best_i = -1
                    for i in range(max(y0, 0), min(y0 + kh, h)):
                        for j in range(max(z0, 0), min(z0 + kw, w)):
                            v = plane[i, j]
                            # `v > best or best_i < 0` keeps a NaN or -inf input selectable.
                            if v > best or best_i < 0:
                                best = v
                                best_i = i * w + j
                    out[b, c, y, z] = best
                    arg[b, c, y, z] = best_i
    return out, arg


@numba.njit(cache=True)
def maxpool2d_bwd(g_out, x, kh, kw, stride_h, stride_w, pad_h, pad_w, saved0, out, into_x=None):
    b_n, c_n, h, w = x.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    gx = _zeroed(x, into_x)
    for b in range(b_n):
        for c in range(c_n):
            gplane = gx[b, c].reshape(-1)
            for y in range(oh):
                for z in range(ow):
                    i = saved0[b, c, y, z]
                    if i >= 0:
                        gplane[i] += g_out[b, c, y, z]
    return (gx,)


# --------------------------------------------------------------------------- avgpool2d
@numba.njit(cache=True)
def avgpool2d_fwd(x, kh, kw, stride_h, stride_w, pad_h, pad_w, out=None):
    b_n, c_n, h, w = x.shape
    oh = _out_size(h, kh, stride_h, pad_h)
    ow = _out_size(w, kw, stride_w, pad_w)
    if out is None:
        out = np.empty((b_n, c_n, oh, ow), dtype=x.dtype)
    inv = 1.0 / (kh * kw)
    for b in range(b_n):
        for c in range(c_n):
            plane = x[b, c]
            for y in range(oh):
                y0 = y * stride_h - pad_h
                for z in range(ow):
                    z0 = z * stride_w - pad_w
                    s = 0.0
                    for i in range(max(y0, 0), min(y0 + kh, h)):
                        for j in range(max(z0, 0), min(z0 + kw, w)):
                            s += plane[i, j]
                    out[b, c, y, z] = s * inv
    return (out,)


@numba.njit(cache=True)
def avgpool2d_bwd(g_out, x, kh, kw, stride_h, stride_w, pad_h, pad_w, out, into_x=None):
    b_n, c_n, h, w = x.shape
    oh, ow = g_out.shape[2], g_out.shape[3]
    gx = _zeroed(x, into_x)
    inv = 1.0 / (kh * kw)
    for b in range(b_n):
        for c in range(c_n):
            gplane = gx[b, c]
            for y in range(oh):
                y0 = y * stride_h - pad_h
                for z in range(ow):
                    z0 = z * stride_w - pad_w
                    gv = g_out[b, c, y, z] * inv
                    for i in range(max(y0, 0), min(y0 + kh, h)):
                        for j in range(max(z0, 0), min(z0 + kw, w)):
                            gplane[i, j] += gv
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
