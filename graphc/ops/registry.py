"""The op registry: each op is defined once, with everything graphc needs to know about it.

An op definition keeps together (in the style of JAX's `lax` primitives):
  attribute schema · input ports · shape rule · parameter shapes and initializers · FLOP count.
The shape rule is the decorated function; its docstring is the op's documentation. Kernels
(forward and VJP) live in `graphc.kernels` and are bound by op name, so that `check`, `lint`
and `render` never import Numba.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sympy

from graphc.shapes import Dim, TensorType, dims_equal, fmt_dim, fmt_shape

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

ATTR_TYPES = ("int", "float", "bool", "str", "ints", "int2", "axis", "axes", "shape")


@dataclass(frozen=True)
class Attr:
    type: str
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple = ()
    min: float | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Port:
    name: str
    optional: bool = False
    dtype: str = "float"  # "float" | "int" | "any"
    variadic: bool = False  # takes any number of tensors (concat)

    @property
    def differentiable(self) -> bool:
        return self.dtype != "int"


@dataclass(frozen=True)
class ParamDef:
    shape: tuple[int, ...]
    init: str  # "zeros" | "ones" | "normal(0.02)" | "uniform_fan_in(k)" | ...
    decay: bool = True  # weight decay applies (False for biases, norm gains, buffers)
    trainable: bool = True  # False for buffers such as running statistics

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class ShapeError(Exception):
    """Raised by a shape rule; `attr` or `port` says which part of the node to point at."""

    def __init__(self, message: str, *, attr: str | None = None, port: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.attr, self.port, self.hint = attr, port, hint


@dataclass
class Ctx:
    """What a shape/param/flop rule sees of one node."""

    node: str
    op: str
    attrs: dict[str, Any]
    inputs: dict[str, TensorType | list[TensorType] | None]
    outputs: dict[str, TensorType] = field(default_factory=dict)

    def fail(self, message: str, **kw) -> None:
        raise ShapeError(message, **kw)

    def has(self, port: str) -> bool:
        return self.inputs.get(port) is not None

    def input(self, port: str, *, ranks: tuple[int, ...] | None = None, min_rank: int = 0):
        t = self.inputs.get(port)
        if t is None:
            return None
        if ranks is not None and t.rank not in ranks:
            want = " or ".join(str(r) for r in ranks)
            self.fail(f"input `{port}` must have rank {want}, found rank {t.rank} {t}", port=port)
        if t.rank < min_rank:
            self.fail(f"input `{port}` must have rank ≥ {min_rank}, found {t}", port=port)
        return t

    def same(self, a: Dim, b: Dim, what: str, *, port: str | None = None, attr: str | None = None):
        if not dims_equal(a, b):
            self.fail(f"{what}: expected {fmt_dim(b)}, found {fmt_dim(a)}", port=port, attr=attr)

    def concrete(self, d: Dim, what: str, *, port: str | None = None) -> int:
        if not d.is_Integer:
            self.fail(f"{what} must be a concrete size to size the parameters, found `{fmt_dim(d)}`",
                      port=port, hint="give that axis a number in the input shape or a constant")
        return int(d)

    def whole(self, d: Dim, what: str, *, attr: str | None = None) -> Dim:
        """A size computed by division must be a whole number; never floor silently."""
        d = sympy.nsimplify(d) if d.is_number else d
        if d.is_number and not d.is_Integer:
            self.fail(f"{what} is {d} = {float(d):g}, not a whole number", attr=attr,
                      hint="adjust padding, kernel or stride so the size divides evenly")
        if d.is_number and d < 1:
            self.fail(f"{what} is {d}: the output would be empty", attr=attr)
        return d

    def param_shape(self, *dims: Dim, what: str = "parameter size") -> tuple[int, ...]:
        return tuple(self.concrete(d, what) for d in dims)


@dataclass
class OpDef:
    name: str
    family: str
    doc: str
    inputs: tuple[Port, ...]
    attrs: dict[str, Attr]
    shape: Callable[[Ctx], TensorType | dict[str, TensorType]]
    params: Callable[[Ctx], dict[str, ParamDef]] | None = None
    flops: Callable[[Ctx], Dim] | None = None
    outputs: tuple[str, ...] | Callable[[dict], tuple[str, ...]] = ("out",)
    loss: bool = False
    stochastic: bool = False  # behaves differently in training (dropout, batchnorm)

    def output_names(self, attrs: dict) -> tuple[str, ...]:
        return self.outputs(attrs) if callable(self.outputs) else self.outputs

    def port(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)


OPS: dict[str, OpDef] = {}


def defop(name: str, *, family: str, inputs=("x",), attrs: dict[str, Attr] | None = None,
          params=None, flops=None, outputs=("out",), loss: bool = False, stochastic: bool = False):
    """Register an op; decorates its shape rule. Ports are names or `Port`s."""

    ports = tuple(p if isinstance(p, Port) else Port(p) for p in inputs)

    def register(shape_rule):
        if name in OPS:
            raise RuntimeError(f"op `{name}` is defined twice")
        doc = (shape_rule.__doc__ or "").strip()
        if not doc:
            raise RuntimeError(f"op `{name}` has no docstring")
        OPS[name] = OpDef(name, family, doc, ports, dict(attrs or {}), shape_rule, params, flops,
                          outputs, loss, stochastic)
        return shape_rule

    return register


def get(name: str) -> OpDef:
    return OPS[name]


def describe_shape(t: TensorType) -> str:
    return fmt_shape(t.shape)
