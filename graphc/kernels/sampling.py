"""Spatial transformer kernels: affine_grid and grid_sample (bilinear, zero padding), 2-D.

Semantics are PyTorch's ``F.affine_grid`` / ``F.grid_sample(mode="bilinear",
padding_mode="zeros")``:

- Base coordinates along an axis of n points: ``align_corners`` true: ``-1 + 2k/(n-1)`` (the
  corner pixel centres); false: ``(2k+1)/n - 1`` (the pixel centres when ±1 are the image's
  outer edges). A size-1 axis has the single coordinate 0 either way (as torch).
- The grid holds (x, y) = (column, row) in [-1, 1]; sampling unnormalises them to pixel
  positions ``ix = (gx+1)/2·(W-1)`` (align) or ``((gx+1)·W - 1)/2`` and blends the four
  neighbours; neighbours outside the image read 0, so a point more than one pixel outside
  reads 0 and gets no gradient.
- The gradient with respect to the grid is that of the bilinear blend, which has a kink on
  the pixel lines; at a point exactly on one, the floor picks the right-hand piece (as torch).

Coordinates and weights are computed in float64 whatever the tensors' dtype; outputs and
gradients take the input's dtype. A point whose coordinates are not finite reads 0 and gets
no gradient.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _zeroed(x, into):
    """A zero gradient buffer shaped like x: ``into`` cleared, or a fresh one when None."""
    if into is None:
        return np.zeros_like(x)
    into.reshape(-1)[:] = 0.0
    return into


@numba.njit(cache=True)
def _base(k, n, align_corners):
    """The normalised coordinate of point k of n along one axis."""
    if n <= 1:
        return 0.0
    if align_corners:
        return -1.0 + 2.0 * k / (n - 1)
    return (2.0 * k + 1.0) / n - 1.0


@numba.njit(cache=True)
def _scale(n, align_corners):
    """d(pixel position)/d(normalised coordinate) along an axis of n pixels."""
    return 0.5 * (n - 1) if align_corners else 0.5 * n


@numba.njit(cache=True)
def _pixel(g, n, align_corners):
    """Pixel position of the normalised coordinate g along an axis of n pixels."""
    if align_corners:
        return (g + 1.0) * 0.5 * (n - 1)
    return ((g + 1.0) * n - 1.0) * 0.5


# --------------------------------------------------------------------------- affine_grid
@numba.njit(cache=True)
def affine_grid_fwd(theta, size, align_corners, out=None):
    b_n = theta.shape[0]
    h = int(size[0])
    w = int(size[1])
    if out is None:
        out = np.empty((b_n, h, w, 2), dtype=theta.dtype)
    for b in range(b_n):
        t00, t01, t02 = float(theta[b, 0, 0]), float(theta[b, 0, 1]), float(theta[b, 0, 2])
        t10, t11, t12 = float(theta[b, 1, 0]), float(theta[b, 1, 1]), float(theta[b, 1, 2])
        for i in range(h):
            y = _base(i, h, align_corners)
            for j in range(w):
                x = _base(j, w, align_corners)
                out[b, i, j, 0] = t00 * x + t01 * y + t02
                out[b, i, j, 1] = t10 * x + t11 * y + t12
    return (out,)


@numba.njit(cache=True)
def affine_grid_bwd(g_out, theta, size, align_corners, out, into_theta=None):
    b_n = theta.shape[0]
    h, w = g_out.shape[1], g_out.shape[2]
    gt = np.empty_like(theta) if into_theta is None else into_theta
    for b in range(b_n):
        # gθ[k] = Σ_ij g[i, j, k] · (x_j, y_i, 1)
        s00 = s01 = s02 = s10 = s11 = s12 = 0.0
        for i in range(h):
            y = _base(i, h, align_corners)
            for j in range(w):
                x = _base(j, w, align_corners)
                g0 = float(g_out[b, i, j, 0])
                g1 = float(g_out[b, i, j, 1])
                s00 += g0 * x
                s01 += g0 * y
                s02 += g0
                s10 += g1 * x
                s11 += g1 * y
                s12 += g1
        gt[b, 0, 0], gt[b, 0, 1], gt[b, 0, 2] = s00, s01, s02
        gt[b, 1, 0], gt[b, 1, 1], gt[b, 1, 2] = s10, s11, s12
    return (gt,)


# --------------------------------------------------------------------------- grid_sample
@numba.njit(cache=True)
def _corners(gx, gy, h_in, w_in, align_corners):
    """(live, x0, y0, tx, ty): the top-left neighbour (pixel column x0, row y0) of a grid point
    and its fractional offsets from it; live is false when no neighbour is within reach of the
    image (or a coordinate is NaN)."""
    ix = _pixel(gx, w_in, align_corners)
    iy = _pixel(gy, h_in, align_corners)
    # -1 ≤ ix ≤ W keeps a neighbour in reach (and the floor below in int range); NaN fails too
    if not (ix >= -1.0 and ix <= w_in and iy >= -1.0 and iy <= h_in):
        return False, 0, 0, 0.0, 0.0
    fx = math.floor(ix)
    fy = math.floor(iy)
    return True, int(fx), int(fy), ix - fx, iy - fy


@numba.njit(cache=True)
def grid_sample_fwd(x, grid, align_corners, out=None):
    b_n, c_n, h_in, w_in = x.shape
    h, w = grid.shape[1], grid.shape[2]
    if out is None:
        out = np.empty((b_n, c_n, h, w), dtype=x.dtype)
    for b in range(b_n):
        for i in range(h):
            for j in range(w):
                live, x0, y0, tx, ty = _corners(
                    float(grid[b, i, j, 0]), float(grid[b, i, j, 1]), h_in, w_in, align_corners
                )
                if not live:
                    for c in range(c_n):
                        out[b, c, i, j] = 0.0
                    continue
                x1, y1 = x0 + 1, y0 + 1
                in_x0, in_x1 = 0 <= x0 < w_in, 0 <= x1 < w_in
                in_y0, in_y1 = 0 <= y0 < h_in, 0 <= y1 < h_in
                w_nw, w_ne = (1.0 - tx) * (1.0 - ty), tx * (1.0 - ty)
                w_sw, w_se = (1.0 - tx) * ty, tx * ty
                for c in range(c_n):
                    s = 0.0
                    if in_y0:
                        if in_x0:
                            s += w_nw * x[b, c, y0, x0]
                        if in_x1:
                            s += w_ne * x[b, c, y0, x1]
                    if in_y1:
                        if in_x0:
                            s += w_sw * x[b, c, y1, x0]
                        if in_x1:
                            s += w_se * x[b, c, y1, x1]
                    out[b, c, i, j] = s
    return (out,)


@numba.njit(cache=True)
def grid_sample_bwd(g_out, x, grid, align_corners, out, into_x=None, into_grid=None):
    b_n, c_n, h_in, w_in = x.shape
    h, w = grid.shape[1], grid.shape[2]
    gx = _zeroed(x, into_x)
    gg = np.empty_like(grid) if into_grid is None else into_grid
    sx = _scale(w_in, align_corners)
    sy = _scale(h_in, align_corners)
    for b in range(b_n):
        for i in range(h):
            for j in range(w):
                live, x0, y0, tx, ty = _corners(
                    float(grid[b, i, j, 0]), float(grid[b, i, j, 1]), h_in, w_in, align_corners
                )
                if not live:
                    gg[b, i, j, 0] = 0.0
                    gg[b, i, j, 1] = 0.0
                    continue
                x1, y1 = x0 + 1, y0 + 1
                in_x0, in_x1 = 0 <= x0 < w_in, 0 <= x1 < w_in
                in_y0, in_y1 = 0 <= y0 < h_in, 0 <= y1 < h_in
                w_nw, w_ne = (1.0 - tx) * (1.0 - ty), tx * (1.0 - ty)
                w_sw, w_se = (1.0 - tx) * ty, tx * ty
                d_ix = 0.0  # d(loss)/d(pixel x), summed over channels
                d_iy = 0.0
                for c in range(c_n):
                    g = float(g_out[b, c, i, j])
                    if in_y0:
                        if in_x0:
                            v = x[b, c, y0, x0]
                            gx[b, c, y0, x0] += w_nw * g
                            d_ix -= (1.0 - ty) * v * g
                            d_iy -= (1.0 - tx) * v * g
                        if in_x1:
                            v = x[b, c, y0, x1]
                            gx[b, c, y0, x1] += w_ne * g
                            d_ix += (1.0 - ty) * v * g
                            d_iy -= tx * v * g
                    if in_y1:
                        if in_x0:
                            v = x[b, c, y1, x0]
                            gx[b, c, y1, x0] += w_sw * g
                            d_ix -= ty * v * g
                            d_iy += (1.0 - tx) * v * g
                        if in_x1:
                            v = x[b, c, y1, x1]
                            gx[b, c, y1, x1] += w_se * g
                            d_ix += ty * v * g
                            d_iy += tx * v * g
                gg[b, i, j, 0] = d_ix * sx
                gg[b, i, j, 1] = d_iy * sy
    return gx, gg
