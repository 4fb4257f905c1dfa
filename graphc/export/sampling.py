"""ONNX exporters of the spatial transformer ops: affine_grid (spelled out: ONNX's AffineGrid
needs opset 20) and grid_sample (GridSample, bilinear, zero padding)."""

from __future__ import annotations

import sympy

from graphc.export.builder import Emit
from graphc.ops import register


def _coords(e: Emit, n, align: bool) -> str:
    """The normalised coordinates of n points along an axis, as the kernel's `_base`:
    -1 + 2k/(n-1) (align_corners) or (2k+1)/n - 1; a single point is 0."""
    n = sympy.sympify(n)
    count = e.scalar_dim(n)
    k = e.op("Cast", e.op("Range", e.const(0, "int64"), count, e.const(1, "int64")), to=1)
    nf = e.op("Cast", count, to=1)
    if align:
        coords = e.op("Sub", e.op("Div", e.op("Mul", k, e.const(2.0)),
                                  e.op("Max", e.op("Sub", nf, e.const(1.0)), e.const(1.0))),
                      e.const(1.0))
    else:
        coords = e.op("Sub", e.op("Div", e.op("Add", e.op("Mul", k, e.const(2.0)), e.const(1.0)), nf),
                      e.const(1.0))
    if not align or (n.is_Integer and int(n) > 1):  # unaligned: n = 1 gives 0 by itself
        return coords
    return e.op("Where", e.op("Greater", count, e.const(1, "int64")), coords, e.const(0.0))


@register("affine_grid", "onnx")
def affine_grid(e: Emit) -> str:
    """grid[b, i, j] = θ_b · (x_j, y_i, 1): a [H·W, 3] base grid times θᵀ."""
    h, w = e.attrs["size"]
    align = bool(e.attrs["align_corners"])
    hw = e.shape([h, w])
    xs = e.op("Expand", e.op("Unsqueeze", _coords(e, w, align), e.ints([0])), hw)  # [H, W]
    ys = e.op("Expand", e.op("Unsqueeze", _coords(e, h, align), e.ints([1])), hw)
    ones = e.op("Expand", e.const(1.0), hw)
    last = e.ints([-1])
    base = e.op("Concat", *(e.op("Unsqueeze", t, last) for t in (xs, ys, ones)), axis=-1)
    base = e.op("Reshape", base, e.ints([-1, 3]))  # [H·W, 3]
    grid = e.op("MatMul", base, e.op("Transpose", e.input("theta"), perm=[0, 2, 1]))  # [B, H·W, 2]
    return e.op("Reshape", grid, e.shape([0, h, w, 2]))


@register("grid_sample", "onnx")
def grid_sample(e: Emit) -> str:
    return e.op("GridSample", e.input("x"), e.input("grid"), mode="bilinear", padding_mode="zeros",
                align_corners=int(bool(e.attrs["align_corners"])))
