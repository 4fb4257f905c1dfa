"""ONNX exporters of normalization: layernorm, rmsnorm, batchnorm (running statistics), add_norm."""

from __future__ import annotations

from graphc.export.builder import Emit
from graphc.ops import register


def _layernorm(e: Emit, x: str, affine: bool) -> str:
    eps = float(e.attrs["eps"])
    if affine:
        return e.op("LayerNormalization", x, e.param("weight"), e.param("bias"), axis=-1, epsilon=eps)
    # without γ, β: spelled out (LayerNormalization needs a scale of the normalized width)
    centred = e.op("Sub", x, e.op("ReduceMean", x, axes=[-1], keepdims=1))
    var = e.op("ReduceMean", e.op("Mul", centred, centred), axes=[-1], keepdims=1)
    return e.op("Div", centred, e.op("Sqrt", e.op("Add", var, e.const(eps))))


register("layernorm", "onnx")(lambda e: _layernorm(e, e.input("x"), e.attrs["affine"]))
register("add_norm", "onnx")(lambda e: _layernorm(e, e.op("Add", e.input("x"), e.input("y")), True))


@register("rmsnorm", "onnx")
def rmsnorm(e: Emit) -> str:
    """x / √(mean(x²) + eps) · γ (ONNX's RMSNormalization needs opset 23)."""
    x = e.input("x")
    ms = e.op("ReduceMean", e.op("Mul", x, x), axes=[-1], keepdims=1)
    inv = e.op("Reciprocal", e.op("Sqrt", e.op("Add", ms, e.const(float(e.attrs["eps"])))))
    return e.op("Mul", e.op("Mul", x, inv), e.param("weight"))


@register("batchnorm", "onnx")
def batchnorm(e: Emit) -> str:
    """Inference mode: the running statistics (ONNX's default, training_mode 0)."""
    return e.op("BatchNormalization", e.input("x"), e.param("weight"), e.param("bias"),
                e.param("running_mean"), e.param("running_var"), epsilon=float(e.attrs["eps"]),
                momentum=1.0 - float(e.attrs["momentum"]))
