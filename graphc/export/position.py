"""ONNX exporters of graphc.ops.position: rotary (cos/sin of the positions computed in the
graph, so any sequence length works) and causal_mask (Trilu of ones, then Where)."""

from __future__ import annotations

import numpy as np

from graphc.export.builder import Emit
from graphc.ops import register


@register("rotary", "onnx")
def rotary(e: Emit) -> str:
    x, t = e.input("x"), e.type("x")
    heads = int(e.attrs["heads"])
    d = int(t.shape[-1]) // heads
    half = d // 2
    inv = np.array([e.attrs["base"] ** (-2.0 * j / d) for j in range(half)], dtype=np.float32)
    pos = e.op("Cast", e.op("Range", e.const(0, "int64"), e.scalar_dim(t.shape[-2]), e.const(1, "int64")),
               to=1)  # float
    angle = e.op("Mul", e.op("Unsqueeze", pos, e.ints([1])), e.const(inv))  # [T, d/2]
    cos, sin = e.op("Cos", angle), e.op("Sin", angle)
    if t.rank == 3:  # [B, T, H·d] → [B, T, H, d]: the angles broadcast over the heads axis
        x4 = e.op("Reshape", x, e.ints([0, 0, heads, d]))
        cos, sin = (e.op("Unsqueeze", v, e.ints([1])) for v in (cos, sin))
    else:
        x4 = x
    if e.attrs["interleaved"]:  # pairs (2j, 2j+1): [..., d/2, 2]
        pairs = e.op("Reshape", x4, e.ints([0, 0, 0, half, 2]))
        cos, sin = (e.op("Unsqueeze", v, e.ints([-1])) for v in (cos, sin))
    else:  # pairs (j, j + d/2)
        pairs = x4
    a, b = e.op("Split", pairs, axis=-1, outputs=2)
    ra = e.op("Sub", e.op("Mul", a, cos), e.op("Mul", b, sin))
    rb = e.op("Add", e.op("Mul", b, cos), e.op("Mul", a, sin))
    out = e.op("Concat", ra, rb, axis=-1)
    return e.op("Reshape", out, e.op("Shape", x))


@register("causal_mask", "onnx")
def causal_mask(e: Emit) -> str:
    x = e.input("x")
    ones = e.op("Expand", e.const(1.0), e.op("Shape", x))
    keep = e.op("Cast", e.op("Trilu", ones, upper=0), to=9)  # bool: s <= t
    return e.op("Where", keep, x, e.const(-np.inf))
