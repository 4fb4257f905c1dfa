"""ONNX exporters of the ops that make tensors: param (an initializer), constant, expand."""

from __future__ import annotations

import numpy as np

from graphc.export.builder import Emit
from graphc.ops import register

register("param", "onnx")(lambda e: e.op("Identity", e.param("weight")))


@register("constant", "onnx")
def constant(e: Emit) -> str:
    shape = tuple(e.attrs["shape"])
    values = e.lowered["value"]
    return e.const(np.resize(np.asarray(values, dtype=np.float32), shape))


register("expand", "onnx")(lambda e: e.op("Expand", e.input("x"), e.shape(e.attrs["shape"])))
