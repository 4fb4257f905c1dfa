"""ONNX exporters of elementwise ops: arithmetic, activations, softmax, dropout, reductions."""

from __future__ import annotations

import math

from graphc.export.builder import Emit
from graphc.ops import register

for _name, _onnx in (("add", "Add"), ("sub", "Sub"), ("mul", "Mul")):
    register(_name, "onnx")(lambda e, _onnx=_onnx: e.op(_onnx, e.input("a"), e.input("b")))

for _name, _onnx in (("relu", "Relu"), ("tanh", "Tanh"), ("sigmoid", "Sigmoid")):
    register(_name, "onnx")(lambda e, _onnx=_onnx: e.op(_onnx, e.input("x")))


@register("gelu", "onnx")
def gelu(e: Emit) -> str:
    """x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (ONNX's Gelu op needs opset 20)."""
    x = e.input("x")
    erf = e.op("Erf", e.op("Mul", x, e.const(1.0 / math.sqrt(2.0))))
    return e.op("Mul", e.op("Mul", x, e.const(0.5)), e.op("Add", erf, e.const(1.0)))


register("softmax", "onnx")(lambda e: e.op("Softmax", e.input("x"), axis=e.attrs["axis"]))
register("log_softmax", "onnx")(lambda e: e.op("LogSoftmax", e.input("x"), axis=e.attrs["axis"]))


@register("dropout", "onnx")
def dropout(e: Emit) -> str:
    """Inference mode: the identity."""
    return e.op("Identity", e.input("x"))


def _reduce(onnx_op: str):
    def export(e: Emit) -> str:
        axes = e.lowered["axis"]
        keep = int(e.attrs["keepdims"])
        if onnx_op == "ReduceSum":  # opset 13+: axes as an input
            return e.op(onnx_op, e.input("x"), None if axes is None else e.ints(axes), keepdims=keep)
        return e.op(onnx_op, e.input("x"), axes=None if axes is None else list(axes), keepdims=keep)

    return export


register("sum", "onnx")(_reduce("ReduceSum"))
register("mean", "onnx")(_reduce("ReduceMean"))
