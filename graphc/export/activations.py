"""ONNX exporters of the activations of graphc.ops.activations: clamp, relu6, hardswish, silu."""

from __future__ import annotations

import math

from graphc.export.builder import Emit
from graphc.ops import register


@register("clamp", "onnx")
def clamp(e: Emit) -> str:
    lo, hi = e.lowered["lo"], e.lowered["hi"]
    return e.op("Clip", e.input("x"), e.const(lo) if math.isfinite(lo) else None,
                e.const(hi) if math.isfinite(hi) else None)


register("relu6", "onnx")(lambda e: e.op("Clip", e.input("x"), e.const(0.0), e.const(6.0)))
register("hardswish", "onnx")(lambda e: e.op("HardSwish", e.input("x")))
register("silu", "onnx")(lambda e: e.op("Mul", e.input("x"), e.op("Sigmoid", e.input("x"))))
