"""ONNX exporters of the data-movement ops: flatten, reshape, transpose, permute, concat, split,
slice."""

from __future__ import annotations

from graphc.export.builder import Emit
from graphc.ops import register

INT64_MAX = 2**63 - 1


@register("flatten", "onnx")
def flatten(e: Emit) -> str:
    """Keep the axes before `start` (Reshape's 0 copies a dim), merge the rest (-1)."""
    return e.op("Reshape", e.input("x"), e.ints([0] * e.lowered["start"] + [-1]))


register("reshape", "onnx")(lambda e: e.op("Reshape", e.input("x"), e.shape(e.attrs["shape"])))


@register("transpose", "onnx")
def transpose(e: Emit) -> str:
    perm = list(range(e.type("x").rank))
    a, b = e.lowered["dim0"], e.lowered["dim1"]
    perm[a], perm[b] = perm[b], perm[a]
    return e.op("Transpose", e.input("x"), perm=perm)


register("permute", "onnx")(lambda e: e.op("Transpose", e.input("x"), perm=list(e.lowered["dims"])))
register("concat", "onnx")(lambda e: e.op("Concat", *e.inputs("xs"), axis=e.lowered["axis"]))


@register("split", "onnx")
def split(e: Emit) -> list[str]:
    sizes = list(e.attrs["sizes"])
    outs = e.op("Split", e.input("x"), e.ints(sizes), axis=e.lowered["axis"], outputs=len(sizes))
    return [outs] if len(sizes) == 1 else outs


@register("slice", "onnx")
def slice_(e: Emit) -> str:
    stop = e.attrs["stop"]
    return e.op("Slice", e.input("x"), e.ints([e.attrs["start"]]),
                e.ints([INT64_MAX if stop is None else stop]), e.ints([e.lowered["axis"]]))
