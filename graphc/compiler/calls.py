"""The back end's IR: kernel calls as data.

A `Call` is one kernel call of the generated driver, with typed operands (what each keyword
argument is) and typed results (where each returned value goes). Autodiff builds calls, the
buffer plan and `render --backward` read them, and `codegen` is the only module that turns
them into Python text. Nothing parses generated source back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ---- operands: what a keyword argument of a kernel call is ----------------------------------


@dataclass(frozen=True)
class Value:
    """A tensor of the running function: a forward activation in the forward, a gradient in
    the backward. `saved`: a forward value read back in the backward from the tape."""

    var: str
    saved: bool = False


@dataclass(frozen=True)
class Param:
    """A parameter or buffer of the model (`node.name`)."""

    name: str


@dataclass(frozen=True)
class Const:
    """A constant attribute (an int, float, bool, tuple or None)."""

    value: Any


@dataclass(frozen=True)
class Absent:
    """An optional input or parameter the node does not have: a zero-size array."""


@dataclass(frozen=True)
class Shape:
    """A shape whose dims may be symbolic, evaluated when a batch binds them."""

    dims: tuple


@dataclass(frozen=True)
class Mode:
    """Whether the step is a training step (dropout, batch statistics)."""


@dataclass(frozen=True)
class Many:
    """A list of tensors for a variadic port (concat)."""

    items: tuple[Value, ...]


@dataclass(frozen=True)
class ZerosLike:
    """The cotangent of an output no loss depends on: zeros shaped like the forward value."""

    of: Value


@dataclass(frozen=True)
class Vector:
    """A scalar gradient reshaped to (1,) for a loss kernel's backward."""

    of: Value


@dataclass(frozen=True)
class Dest:
    """A destination the kernel writes into (`out=`, `into_<port>=`): the tensor `var` of the
    given symbolic shape. The buffer plan decides whether it is a planned buffer or a fresh
    array."""

    var: str
    shape: tuple


Operand = Value | Param | Const | Absent | Shape | Mode | Many | ZerosLike | Vector | Dest

# ---- results: where each returned value goes ------------------------------------------------


@dataclass(frozen=True)
class Out:
    """A value bound to a driver variable."""

    var: str


@dataclass(frozen=True)
class ParamGrad:
    """The gradient of parameter `name`, handed to the optimizer. `part`: a parameter shared by
    several nodes (`tie:`) already has a gradient from a later node; this call's contribution
    is bound to the temporary `part` and added to it."""

    name: str
    part: str = ""

    def __repr__(self) -> str:  # as before shared parameters existed, unless this is one
        return f"ParamGrad(name={self.name!r}" + (f", part={self.part!r})" if self.part else ")")


@dataclass(frozen=True)
class Drop:
    """A returned value nobody needs."""


Result = Out | ParamGrad | Drop


@dataclass(frozen=True)
class Accumulate:
    """total += part: a tensor that fans out gets the sum of its consumers' gradients."""

    total: str
    part: str


@dataclass(frozen=True)
class Noise:
    """Uniform noise shaped like `like`, drawn in training (dropout); the backward reads it."""

    var: str
    like: str


@dataclass
class Call:
    node: str
    op: str
    kernel: str  # the kernel function's name in the generated module (`linear_fwd`)
    args: dict[str, Operand]  # keyword → operand, in the kernel's order
    results: list[Result]
    comment: str = ""
    noise: Noise | None = None  # drawn before the call
    accumulate: list[Accumulate] = field(default_factory=list)  # after the call
    scalar: str | None = None  # after the call, this (1,) loss becomes a scalar

    def reads(self) -> set[str]:
        """The tensor variables the call reads (arguments, noise shape, accumulations)."""
        names: set[str] = set()

        def visit(op):
            if isinstance(op, Value):
                names.add(op.var)
            elif isinstance(op, Many):
                for item in op.items:
                    visit(item)
            elif isinstance(op, ZerosLike | Vector):
                visit(op.of)

        for op in self.args.values():
            visit(op)
        if self.noise:
            names.add(self.noise.like)
        for acc in self.accumulate:
            names |= {acc.total, acc.part}
        return names

    def dests(self) -> list[Dest]:
        return [d for d in self.args.values() if isinstance(d, Dest)]

    def bound(self) -> list[str]:
        """The tensor variables the call binds to its results."""
        return [r.var for r in self.results if isinstance(r, Out)]


@dataclass
class Program:
    """The forward and backward calls of one spec, and the names the driver uses."""

    graph: Any  # graphc.ir.Graph
    forward: list[Call]
    backward: list[Call]
    tensors: dict[tuple[str, str], str]  # (node, port) → variable name
    saved: dict[str, list[str]]  # node → its saved-tensor variable names
    dims: dict[str, tuple[str, int]]  # symbolic dim → (input, axis) it is read from
    kernels: dict[str, object]  # generated-module name → kernel function
    input_grads: dict[str, str]  # graph input → gradient variable (when differentiated)
    seeds: dict[str, str] = field(default_factory=dict)  # gradient variable → its loss (weight W[loss])
    noise: dict[str, str] = field(default_factory=dict)  # node → its noise variable
    wrt_inputs: bool = False
    dim_vars: dict[str, str] = field(default_factory=dict)  # symbolic dim → its driver variable
    fused: list = field(default_factory=list)  # graphc.compiler.fuse.FusedGroup, after `fuse`
