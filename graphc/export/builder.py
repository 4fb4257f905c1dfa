"""What an op's ONNX exporter writes into: ONNX nodes as plain records, turned into a
`ModelProto` only at the end (so registering and running exporters needs no onnx import, and
nothing is written until every node has exported).

An exporter is `fn(e: Emit) -> tensor | [tensors]`, registered with
`graphc.ops.register(op, "onnx")`. It reads the spec node through `e` (inputs by port, graphc
types, lowered attributes, parameters as initializers named `<node>.<param>`), emits ONNX
nodes with `e.op(...)` and returns the tensors of the node's outputs, in order. The builder
then names them: the ONNX node that produces a spec node's (first) output is named after the
spec node, its helpers `<node>/<OpType>`, and the tensor after the spec node (`<node>.<port>`
for multi-output ops).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from graphc.ir import Graph, Node
from graphc.ops import OPS
from graphc.shapes import TensorType

OPSET = 17  # LayerNormalization (17), GridSample (16); Reduce* take `axes` as an attribute

# ONNX TensorProto element types (onnx.TensorProto.FLOAT, INT64, BOOL, DOUBLE)
ELEM = {"float32": 1, "int64": 7, "bool": 9, "float64": 11}


class Unsupported(Exception):
    """A node that cannot be expressed in ONNX (with the reason); reported before writing."""


@dataclass
class OnnxNode:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str = ""
    domain: str = ""


@dataclass
class Builder:
    """The ONNX graph under construction: nodes, initializers, and how dims are computed."""

    graph: Graph
    params: dict[str, np.ndarray]
    nodes: list[OnnxNode] = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    tensors: dict[tuple[str, str], str] = field(default_factory=dict)  # (node, port) → name
    taken: set[str] = field(default_factory=set)
    _consts: dict[tuple, str] = field(default_factory=dict)
    _dims: dict[str, str] = field(default_factory=dict)  # dim expression → [1] int64 tensor
    _count: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self):
        self.binders = {}  # symbolic dim → (input, axis) it is read from, as the driver does
        for node in self.graph.inputs:
            self.taken.add(node.name)
            self.tensors[(node.name, "out")] = node.name
            for axis, d in enumerate(node.shape_spec):
                d = sympy.sympify(d)
                if d.is_Symbol:
                    self.binders.setdefault(str(d), (node.name, axis))

    def fresh(self, base: str) -> str:
        name = base
        while name in self.taken:
            name = f"{base}_{next(self._count)}"
        self.taken.add(name)
        return name

    def initializer(self, name: str, value: np.ndarray, *, fresh: bool = False) -> str:
        if not fresh:
            if name in self.taken:
                raise RuntimeError(f"ONNX name `{name}` is used twice")
            self.taken.add(name)
        self.initializers[name] = value
        return name

    def const(self, value, dtype: str) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.initializer(self.fresh("const"), arr, fresh=True)
        return self._consts[key]

    # -- dims: a shape with symbols (B, T) becomes arithmetic on Shape(input) ------------------
    def dim(self, d, owner: Emit) -> str:
        """A [1] int64 tensor holding the dimension `d` (an int or a sympy expression)."""
        d = sympy.sympify(d)
        if d.is_Integer:
            return self.const([int(d)], "int64")
        key = str(d)
        if key not in self._dims:
            self._dims[key] = self._expr(d, owner)
        return self._dims[key]

    def _expr(self, d, owner: Emit) -> str:
        if d.is_Integer:
            return self.const([int(d)], "int64")
        if d.is_Symbol:
            if str(d) not in self.binders:
                raise Unsupported(f"dimension `{d}` is not bound by any input of the exported graph")
            inp, axis = self.binders[str(d)]
            return owner.op("Shape", inp, start=axis, end=axis + 1)
        if d.is_Add:
            terms = [self.dim(a, owner) for a in d.args]
            return self._fold("Add", terms, owner)
        if d.is_Mul:
            num, den = sympy.fraction(d)
            if den != 1:
                return owner.op("Div", self.dim(num, owner), self.dim(den, owner))
            return self._fold("Mul", [self.dim(a, owner) for a in d.args], owner)
        if d.is_Pow and d.exp.is_Integer and int(d.exp) > 0:
            return self._fold("Mul", [self.dim(d.base, owner)] * int(d.exp), owner)
        if isinstance(d, sympy.floor):
            num, den = sympy.fraction(sympy.together(d.args[0]))
            return owner.op("Div", self.dim(num, owner), self.dim(den, owner))  # ints: floors
        raise Unsupported(f"cannot compute the dimension `{d}` in ONNX")

    @staticmethod
    def _fold(op: str, terms: list[str], owner: Emit) -> str:
        acc = terms[0]
        for t in terms[1:]:
            acc = owner.op(op, acc, t)
        return acc


class Emit:
    """What an exporter sees of one spec node, and how it adds ONNX nodes."""

    def __init__(self, b: Builder, node: Node):
        self.b, self.node, self.name = b, node, node.name
        self.attrs = dict(node.attrs)
        self.emitted: list[OnnxNode] = []
        first = b.graph.types.get(node.inputs[0].tensor) if node.inputs else None
        self.lowered = OPS[node.op].lower(self.attrs, first.rank if first else 0)

    def fail(self, reason: str):
        raise Unsupported(reason)

    # -- reading the spec node
    def inputs(self, port: str) -> list[str]:
        return [self.b.tensors[i.tensor] for i in self.node.port_inputs(port)]

    def input(self, port: str) -> str | None:
        bound = self.inputs(port)
        return bound[0] if bound else None

    def type(self, port: str) -> TensorType | None:
        bound = self.node.port_inputs(port)
        return self.b.graph.types.get(bound[0].tensor) if bound else None

    def out_type(self, port: str = "out") -> TensorType:
        return self.b.graph.types[(self.name, port)]

    def has_param(self, name: str) -> bool:
        return name in self.b.graph.params.get(self.name, {}) or f"{self.name}.{name}" in self.b.graph.ties

    def param(self, name: str) -> str:
        """The initializer of parameter `name` of this node (`<node>.<name>`, or the parameter
        it shares with another node: `tie:`)."""
        full = f"{self.name}.{name}"
        full = self.b.graph.ties.get(full, full)
        if full not in self.b.initializers:
            if full not in self.b.params:
                raise KeyError(f"no value for parameter `{full}`")
            value = np.asarray(self.b.params[full])
            self.b.initializer(full, value.astype(np.float32) if value.dtype.kind == "f" else value)
        return full

    # -- writing ONNX nodes
    def op(self, op_type: str, *inputs: str | None, outputs: int = 1, **attrs) -> Any:
        """Add an ONNX node; returns its output tensor (or a list when `outputs` > 1). An input
        of None is an omitted optional input ("")."""
        outs = [self.b.fresh(f"{self.name}/{op_type}") for _ in range(outputs)]
        names = ["" if i is None else i for i in inputs]
        while names and not names[-1]:  # trailing omitted inputs are left out
            names.pop()
        rec = OnnxNode(op_type, names, outs,
                       {k: v for k, v in attrs.items() if v is not None})
        self.emitted.append(rec)
        return outs[0] if outputs == 1 else outs

    def const(self, value, dtype: str = "float32") -> str:
        return self.b.const(value, dtype)

    def ints(self, values) -> str:
        """A 1-D int64 constant."""
        return self.b.const(list(values), "int64")

    def dim(self, d) -> str:
        """A [1] int64 tensor for a dimension that may be symbolic."""
        return self.b.dim(d, self)

    def scalar_dim(self, d) -> str:
        """A scalar int64 tensor for a dimension (Range's bounds)."""
        d = sympy.sympify(d)
        if d.is_Integer:
            return self.const(int(d), "int64")
        return self.op("Squeeze", self.dim(d), self.ints([0]))

    def shape(self, dims) -> str:
        """A 1-D int64 shape tensor; symbolic dims are computed from the inputs' shapes."""
        dims = [sympy.sympify(d) for d in dims]
        if all(d.is_Integer for d in dims):
            return self.ints(int(d) for d in dims)
        return self.op("Concat", *(self.dim(d) for d in dims), axis=0)

    def linear(self, x: str, weight: str, bias: str | None, rank: int) -> str:
        """x @ Wᵀ (+ b) with W in PyTorch's [out, in] layout (Gemm for 2-D inputs)."""
        if rank == 2:
            return self.op("Gemm", x, weight, bias, transB=1)
        y = self.op("MatMul", x, self.op("Transpose", weight, perm=[1, 0]))
        return self.op("Add", y, bias) if bias else y
