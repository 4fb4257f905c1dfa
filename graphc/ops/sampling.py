"""Spatial transformer sampling (Jaderberg et al., 2015): affine_grid and grid_sample.

A localisation net predicts θ [B, 2, 3]; `affine_grid` turns it into a sampling grid of
normalised (x, y) coordinates in [-1, 1] ([B, H, W, 2], x first, as in PyTorch), and
`grid_sample` reads the image at those points by bilinear interpolation, with zeros outside.
Both are differentiable in all their inputs (θ, the image and the grid), which is what lets
the localisation net learn where to look. Semantics are exactly PyTorch's
`F.affine_grid(θ, [B, C, H, W], align_corners)` and
`F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners)`.
"""

from __future__ import annotations

from graphc.ops.registry import Attr, Kernel, RuntimeShape, defop
from graphc.shapes import dims_equal, fmt_dim, fmt_shape, is_integral

_ALIGN = Attr("bool", False, "true: ±1 are the centres of the corner pixels; false: their outer "
              "edges (PyTorch's default since 1.3)")


def _size(c) -> tuple:
    size = tuple(c.attrs["size"])
    if len(size) != 2:
        c.fail(f"size must be [H, W] (two entries), found {len(size)}: [{', '.join(map(fmt_dim, size))}]",
               attr="size", hint="affine_grid makes 2-D grids; 3-D (volumetric) grids are not supported")
    out = []
    for axis, d in zip(("height", "width"), size, strict=True):
        if d.is_number:
            if d == -1:
                c.fail(f"size {axis} cannot be -1: the grid size is not inferred from θ", attr="size",
                       hint="give the output size, e.g. the input image's [H, W]")
            d = c.whole(d, f"size {axis}", attr="size")
        elif is_integral(d) is False:
            c.fail(f"size {axis} `{fmt_dim(d)}` is not a whole number", attr="size",
                   hint="use // for integer division")
        out.append(d)
    return tuple(out)


@defop("affine_grid", family="sampling", inputs=("theta",),
       kernel=Kernel("sampling", attrs=("size", "align_corners")),
       lower=lambda a, rank: {"size": RuntimeShape(tuple(a["size"])), "align_corners": a["align_corners"]},
       attrs={"size": Attr("shape", doc="output grid size [H, W] (numbers or expressions over "
                           "dims, e.g. [H, W] of the image it will sample)"),
              "align_corners": _ALIGN},
       flops=lambda c: 5 * c.outputs["out"].numel())
def affine_grid(c):
    """Sampling grid of a batch of 2×3 affine transforms θ [B, 2, 3] → [B, H, W, 2]:
    the grid point (i, j) of sample b is θ_b · (x_j, y_i, 1), with x_j, y_i evenly spaced in
    [-1, 1] (PyTorch's affine_grid). The identity θ = [[1, 0, 0], [0, 1, 0]] gives a grid that samples an H×W image
    unchanged."""
    theta = c.input("theta", ranks=(3,))
    rows, cols = theta.shape[1], theta.shape[2]
    if not (dims_equal(rows, 2) and dims_equal(cols, 3)):
        hint = ("θ [B, 3, 4] is a 3-D (volumetric) transform, which is not supported"
                if dims_equal(rows, 3) and dims_equal(cols, 4) else
                "a localisation net usually ends in a linear layer of 6 outputs, reshaped to [-1, 2, 3]")
        c.fail(f"θ must be a 2×3 affine matrix per sample [{fmt_dim(theta.shape[0])}, 2, 3], found "
               f"[{fmt_shape(theta.shape)}]", port="theta", hint=hint)
    h, w = _size(c)
    return theta.with_shape((theta.shape[0], h, w, 2))


@defop("grid_sample", family="sampling", inputs=("x", "grid"),
       kernel=Kernel("sampling", attrs=("align_corners",)),
       attrs={"mode": Attr("str", "bilinear", "interpolation", choices=("bilinear",)),
              "padding_mode": Attr("str", "zeros", "value of samples outside the image",
                                   choices=("zeros",)),
              "align_corners": _ALIGN},
       flops=lambda c: 8 * c.outputs["out"].numel())
def grid_sample(c):
    """Bilinear sampling of x [B, C, H_in, W_in] at grid [B, H, W, 2] → [B, C, H, W]: each grid
    point is (x, y) in [-1, 1] (-1 is the left/top edge); points outside read zeros (PyTorch's
    grid_sample, bilinear, padding_mode zeros). Differentiable in x and in the grid, except on
    the pixel grid lines themselves, where bilinear interpolation has a kink."""
    x = c.input("x", ranks=(4,))
    grid = c.input("grid", ranks=(4,))
    if not dims_equal(grid.shape[3], 2):
        c.fail(f"the last axis of `grid` holds (x, y) coordinates and must be 2, found "
               f"{fmt_dim(grid.shape[3])} in [{fmt_shape(grid.shape)}]", port="grid",
               hint="affine_grid makes grids of shape [B, H, W, 2]")
    c.same(grid.shape[0], x.shape[0], f"the batch axis of `grid` [{fmt_shape(grid.shape)}] must "
           f"match that of `x` [{fmt_shape(x.shape)}]", port="grid")
    return x.with_shape((x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]))
