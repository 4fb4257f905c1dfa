"""Tensor types with symbolic dimensions.

A dimension is a sympy expression over positive-integer symbols (B, T, H, ...), so shape rules
can do real arithmetic: `(H + 2*p - k) / s + 1`, `d_model // heads`, `T * 2`. Concrete sizes
are sympy Integers. sympy keeps `H/2 - 1` exact instead of flooring, which is what lets a
conv whose output size is not a whole number be reported as an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

# sympy is imported where a shape is worked on, not with this module: the ops' registry (and so
# the pointwise kernels generated from it) must load without it for a saved model
# (graphc.compiler.saved), whose shapes the run that saved it worked out.
if TYPE_CHECKING:
    import sympy
    from sympy import Expr as Dim
else:
    Dim = "sympy.Expr"  # annotations only

DTYPES = ("float32", "float64", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")


@cache
def symbol(name: str) -> sympy.Symbol:
    import sympy

    return sympy.Symbol(name, integer=True, positive=True)


def dim(value) -> Dim:
    """Coerce an int or sympy expression into a Dim."""
    import sympy

    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, bool):
        raise TypeError("a dimension cannot be a boolean")
    return sympy.Integer(int(value))


def is_concrete(d: Dim) -> bool:
    return d.is_Integer


# Expanding a product of sums multiplies their term counts: a rank-16 input of `D_i + 1` sizes
# flattened is a product whose expansion has 2**16 terms (minutes in sympy). Sizes whose
# expansion could exceed MAX_TERMS are compared by evaluation instead of by expansion.
MAX_TERMS = 1000
# evaluation points for such sizes: distinct large primes per symbol, three rounds; a nonzero
# polynomial of degree d vanishes at a random point with probability ≤ d / 10**6
_PRIMES = (1_000_003, 1_000_033, 1_000_037, 1_000_039, 1_000_081, 1_000_099, 1_000_117, 1_000_121,
           1_000_133, 1_000_151, 1_000_159, 1_000_171, 1_000_183, 1_000_187, 1_000_193, 1_000_199)


def expanded_terms(e, cap: int = MAX_TERMS) -> int:
    """An upper bound on the number of terms of `sympy.expand(e)` (at most cap + 1), cheaply."""
    if e.is_Atom:
        return 1
    if e.is_Add:
        return min(cap + 1, sum(expanded_terms(a, cap) for a in e.args))
    if e.is_Mul:
        n = 1
        for a in e.args:
            n = min(cap + 1, n * expanded_terms(a, cap))
        return n
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        base = expanded_terms(e.base, cap)
        return 1 if base == 1 else min(cap + 1, base ** min(int(e.exp), 64))
    return min(cap + 1, sum(expanded_terms(a, cap) for a in e.args) or 1)  # floor, Min, Max, …


def _points(e) -> list[dict]:
    import sympy

    symbols = sorted(e.free_symbols, key=str)
    return [{s: sympy.Integer(_PRIMES[(i * 7 + r * 5) % len(_PRIMES)] + 1000 * i) for i, s in enumerate(symbols)}
            for r in range(3)]


def dims_equal(a: Dim, b: Dim) -> bool:
    import sympy

    a, b = sympy.sympify(a), sympy.sympify(b)
    if a == b:
        return True
    d = a - b
    if d.is_number or expanded_terms(d) <= MAX_TERMS:
        return sympy.expand(d) == 0
    return all(d.xreplace(p) == 0 for p in _points(d))


def _integral_form(d) -> bool:
    """Built from integers and integer symbols by +, ·, powers, floor, ceiling, and min, max and
    mod of such: a whole number."""
    import sympy

    if d.is_Integer or d.is_Symbol and d.is_integer:
        return True
    if d.is_Add or d.is_Mul or isinstance(d, sympy.Min | sympy.Max | sympy.Mod):
        return all(_integral_form(a) for a in d.args)
    if d.is_Pow:
        return d.exp.is_Integer and d.exp >= 0 and _integral_form(d.base)
    return isinstance(d, sympy.floor | sympy.ceiling)


def is_integral(d: Dim) -> bool | None:
    """True/False when decidable; None when it depends on unbound symbols (e.g. H/2)."""
    import sympy

    if d.is_Integer:
        return True
    if d.is_number:
        return False
    if _integral_form(d):
        return True
    if expanded_terms(d) > MAX_TERMS:
        return None  # too large to expand: not known to be fractional
    # a polynomial with whole coefficients in whole terms: (H - 1)*(H + 1) - H**2. A term that is
    # itself not whole (`Max(3, H/2)`, whose coefficient is 1) makes it undecided
    terms = sympy.expand(d).as_coefficients_dict()
    if all(sympy.Integer(c) == c and _integral_form(t) for t, c in terms.items()):
        return True
    return None


def lift_quotients(d: Dim) -> Dim:
    """`d` with the quotients inside min, max and mod taken out of them: `Max(3, H/2)` is
    `Max(6, H)/2`, `Mod(H/2, 3)` is `Mod(H, 6)/2` (over a common positive denominator, which
    keeps the order). Then `together` makes a size one quotient of whole-number expressions, so
    integer arithmetic computes it exactly (codegen.pyexpr, guards): flooring each argument,
    `max(3, H // 2)`, is 3 at H = 7, where the size is 7/2 (not whole: an error), and makes
    `ceiling(Max(3, H/2)/2)` 2 at H = 9, where it is 3. A denominator of unknown sign
    (`Max(3, H/(W - 4))`) is left where it is."""
    import sympy

    if d.is_Atom:
        return d
    args = [lift_quotients(a) for a in d.args]
    if isinstance(d, sympy.Min | sympy.Max | sympy.Mod):
        parts = [sympy.fraction(sympy.together(a)) for a in args]
        dens = [den for _, den in parts]
        if any(den != 1 for den in dens) and all(den.is_positive for den in dens):
            common = sympy.lcm_list(dens)
            return d.func(*(sympy.cancel(num * common / den) for num, den in parts)) / common
    return d.func(*args) if args != list(d.args) else d


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
        import sympy

        return sympy.Mul(*self.shape) if self.shape else sympy.Integer(1)


def tensor(shape, dtype: str = "float32") -> TensorType:
    return TensorType(tuple(dim(d) for d in shape), dtype)


def bind(d: Dim, values: dict[str, int]) -> Dim:
    """Substitute concrete values for named symbols."""
    import sympy

    subs = {symbol(k): v for k, v in values.items()}
    return sympy.sympify(d).subs(subs) if subs else d
