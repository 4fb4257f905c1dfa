"""ONNX exporters of the dense family: linear, embedding, positional_encoding, matmul."""

from __future__ import annotations

import numpy as np

from graphc.export.builder import Emit
from graphc.ops import register


@register("linear", "onnx")
def linear(e: Emit) -> str:
    bias = e.param("bias") if e.has_param("bias") else None
    return e.linear(e.input("x"), e.param("weight"), bias, e.type("x").rank)


@register("embedding", "onnx")
def embedding(e: Emit) -> str:
    return e.op("Gather", e.param("weight"), e.input("ids"), axis=0)


def sinusoid(length: int, d: int) -> np.ndarray:
    """The fixed table PE[i, 2j] = sin(i / 10000^(2j/D)), PE[i, 2j+1] = cos(…), as the kernel
    computes it (float64 angles, then float32)."""
    i = np.arange(length, dtype=np.float64)[:, None]
    j = np.arange(0, d, 2, dtype=np.float64)[None, :]
    ang = i / np.power(10000.0, j / d)
    pe = np.empty((length, d))
    pe[:, 0::2] = np.sin(ang)
    pe[:, 1::2] = np.cos(ang)[:, : d // 2]
    return pe.astype(np.float32)


@register("positional_encoding", "onnx")
def positional_encoding(e: Emit) -> str:
    x, t = e.input("x"), e.type("x")
    if e.attrs["kind"] == "learned":
        table = e.param("weight")
    else:
        d = t.shape[2]
        if not d.is_Integer:
            e.fail(f"the sinusoidal table needs a concrete model width, found `{d}`")
        table = e.const(sinusoid(e.attrs["max_len"], int(d)))
    rows = e.op("Slice", table, e.ints([0]), e.dim(t.shape[1]), e.ints([0]))  # the first T
    return e.op("Add", x, rows)


@register("matmul", "onnx")
def matmul(e: Emit) -> str:
    return e.op("MatMul", e.input("a"), e.input("b"))
