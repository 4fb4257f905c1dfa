"""Tensor types with symbolic dimensions.

A dimension is a sympy expression over positive-integer symbols (B, T, H, ...), so shape rules
can do real arithmetic: `(H + 2*p - k) / s + 1`, `d_model // heads`, `T * 2`. Concrete sizes
are sympy Integers. sympy keeps `H/2 - 1` exact instead of flooring, which is what lets a
conv whose output size is not a whole number be reported as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy

Dim = sympy.Expr

DTYPES = ("float32", "float64", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")


@cache
def symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def dim(value) -> Dim:
    """Coerce an int or sympy expression into a Dim."""
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, bool):
        raise TypeError("a dimension cannot be a boolean")
    return sympy.Integer(int(value))


def is_concrete(d: Dim) -> bool:
    return d.is_Integer


def dims_equal(a: Dim, b: Dim) -> bool:
    return sympy.expand(a - b) == 0


def is_integral(d: Dim) -> bool | None:
    """True/False when decidable; None when it depends on unbound symbols (e.g. H/2)."""
    if d.is_Integer:
        return True
    if d.is_number:
        return False
    poly_ok = sympy.expand(d).as_coefficients_dict()
    if all(sympy.Integer(c) == c for c in poly_ok.values()):
        return True
    return None


def fmt_dim(d: Dim) -> str:
    s = str(d)
    return s if d.is_Atom else f"({s})" if " " in s else s


def fmt_shape(shape: tuple[Dim, ...]) -> str:
    if not shape:
        return "scalar"
    return "×".join(fmt_dim(d) for d in shape)


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __str__(self) -> str:
        suffix = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"[{fmt_shape(self.shape)}]{suffix}"

    def with_shape(self, shape) -> TensorType:
        return TensorType(tuple(dim(d) for d in shape), self.dtype)

    def numel(self) -> Dim:
        return sympy.Mul(*self.shape) if self.shape else sympy.Integer(1)


def tensor(shape, dtype: str = "float32") -> TensorType:
    return TensorType(tuple(dim(d) for d in shape), dtype)


def bind(d: Dim, values: dict[str, int]) -> Dim:
    """Substitute concrete values for named symbols."""
    subs = {symbol(k): v for k, v in values.items()}
    return sympy.sympify(d).subs(subs) if subs else d
