"""ONNX exporters of convolutions, pooling and resampling (PyTorch layouts = ONNX layouts)."""

from __future__ import annotations

from graphc.export.builder import Emit
from graphc.ops import register


def _pair(v) -> list[int]:
    return list(v) if isinstance(v, tuple | list) else [v]


def _conv(e: Emit, transposed: bool = False) -> str:
    a = e.attrs
    stride, pad, dil = _pair(a["stride"]), _pair(a["padding"]), _pair(a["dilation"])
    bias = e.param("bias") if e.has_param("bias") else None
    extra = {"output_padding": _pair(a["output_padding"])} if transposed else {}
    return e.op("ConvTranspose" if transposed else "Conv", e.input("x"), e.param("weight"), bias,
                kernel_shape=_pair(a["kernel"]), strides=stride, pads=pad + pad, dilations=dil,
                group=a["groups"], **extra)


register("conv1d", "onnx")(_conv)
register("conv2d", "onnx")(_conv)
register("conv_transpose2d", "onnx")(lambda e: _conv(e, transposed=True))


def _pool(onnx_op: str, **extra):
    def export(e: Emit) -> str:
        a = e.attrs
        kernel = _pair(a["kernel"])
        stride = _pair(a["stride"]) if a["stride"] else kernel
        pad = _pair(a["padding"])
        # round: floor is ONNX's default (ceil_mode 0); `exact` sizes are whole anyway
        return e.op(onnx_op, e.input("x"), kernel_shape=kernel, strides=stride, pads=pad + pad,
                    **extra)

    return export


register("maxpool2d", "onnx")(_pool("MaxPool"))
register("avgpool2d", "onnx")(_pool("AveragePool", count_include_pad=1))  # zeros count, as torch


@register("global_avgpool", "onnx")
def global_avgpool(e: Emit) -> str:
    return e.op("Flatten", e.op("GlobalAveragePool", e.input("x")), axis=1)


@register("upsample", "onnx")
def upsample(e: Emit) -> str:
    """Nearest neighbour by an integer factor: out[y] = x[y // s] ('asymmetric' + floor)."""
    s = float(e.attrs["scale"])
    return e.op("Resize", e.input("x"), None, e.const([1.0, 1.0, s, s]), mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
