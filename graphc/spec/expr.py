"""Arithmetic expressions in specs: `4 * d_model`, `d_model // heads`, `max(1, T // 2)`.

Expressions are parsed with Python's `ast` and evaluated by walking a whitelist of node types;
nothing is ever passed to `eval`. Names resolve to constants (numbers) or to symbolic
dimensions (sympy symbols), so the same evaluator serves attributes and shapes.

Evaluation is bounded in time and memory: the text is at most `MAX_LENGTH` characters, an
exponent at most `MAX_POWER`, and every intermediate result is checked as it is made — a
number must be finite and within ±`MAX_MAGNITUDE` (what a 64-bit integer holds), a symbolic
one must be a polynomial of degree at most `MAX_DEGREE` with such coefficients and at most
`shapes.MAX_TERMS` terms multiplied out. So a power
tower `((9**64)**64)**64` stops at its first step instead of growing a number of a
million digits, and `(B + T) ** 64 ** 64` never reaches sympy's expander.
"""

from __future__ import annotations

import ast
import math
import operator
import sys
from collections.abc import Mapping
from functools import lru_cache

import sympy

from graphc.shapes import MAX_TERMS, expanded_terms

MAX_LENGTH = 400
MAX_POWER = 64
MAX_MAGNITUDE = 2**63 - 1
MAX_DEGREE = 8
_MAX_FLOAT = sys.float_info.max

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCS = {
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "round": round,
    "abs": abs,
    "sqrt": math.sqrt,
    "ceil": math.ceil,
    "floor": math.floor,
}


class ExprError(ValueError):
    """A bad expression; `hint` may suggest a fix (did you mean ...)."""

    def __init__(self, message: str, hint: str | None = None, name: str | None = None, value=None):
        super().__init__(message)
        self.hint = hint
        self.name = name  # an unknown identifier, if that was the problem
        self.value = value  # what a name stood for when it is not a number (e.g. a block argument)


NUMBER = (int, float, sympy.Basic)  # what a name may stand for in arithmetic (bool is an int)


def check_number(v, text: str = ""):
    """`v` if it is a finite number (or symbolic expression) within the bounds; else ExprError.

    Integers (and the integer parts of symbolic sizes) are bounded by ±`MAX_MAGNITUDE`; floats
    must be finite (converting one to an integer meets the integer bound)."""
    where = f" in `{text}`" if text else ""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        if abs(v) > MAX_MAGNITUDE:
            raise ExprError(f"{_short(v)} is too large{where}: numbers in a spec must lie within "
                            f"±2**63 (a 64-bit integer)")
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ExprError(f"{v} is not a finite number{where}")
        return v
    if isinstance(v, sympy.Basic):
        if v.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan) or v.has(sympy.I):
            raise ExprError(f"`{v}` is not a finite real number{where}")
        for a in v.atoms(sympy.Number):
            if abs(a) > (_MAX_FLOAT if a.is_Float else MAX_MAGNITUDE):
                raise ExprError(f"{_short(a)} is too large{where}: numbers in a spec must lie within "
                                f"±2**63 (a 64-bit integer)")
        if not v.is_number and _degree(v) > MAX_DEGREE:
            raise ExprError(f"`{_short(v)}` is a polynomial of too high a degree{where} "
                            f"(more than {MAX_DEGREE})")
        if not v.is_number and expanded_terms(v) > MAX_TERMS:
            raise ExprError(f"`{_short(v)}` is too large{where}: more than {MAX_TERMS} terms "
                            f"multiplied out")
        return v
    raise ExprError(f"the result{where} is not a real number")


def _short(v) -> str:
    s = str(v)
    return s if len(s) <= 40 else f"{s[:18]}…{s[-18:]} ({len(s)} characters)"


def _degree(e) -> int:
    """The total degree of a symbolic size, cheaply (floor/Min/Max count as their arguments)."""
    if e.is_Symbol:
        return 1
    if e.is_number:
        return 0
    if e.is_Pow:
        exp = e.exp
        if not exp.is_number:
            return MAX_DEGREE + 1
        return _degree(e.base) * max(1, abs(int(exp))) if exp.is_Integer else _degree(e.base) * 2
    degrees = [_degree(a) for a in e.args]
    if e.is_Mul:
        return sum(degrees)
    return max(degrees, default=0)


def _symbolic_floordiv(a, b):
    if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
        q = sympy.sympify(a) / b
        return q if (sympy.sympify(a) % b) == 0 else sympy.floor(q)
    return a // b


def evaluate(text: str, scope: Mapping[str, object]):
    """Evaluate `text` with names from `scope`; returns int, float, bool or a sympy expression."""
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    tree = _parse(text.strip())
    if isinstance(tree, str):
        raise ExprError(f"cannot parse expression `{text}`: {tree}")
    try:
        value = check_number(_eval(tree.body, scope, text), text)
        if isinstance(value, sympy.Basic) and not value.is_number and value.has(sympy.Float):
            # `/` of integers that do not divide is a float (`lr: 1/3`), but in a symbolic size it
            # must stay exact: `W/3 + 2/3` (how graphc prints an exact pool's size) was
            # W/3 + 0.666666666666667, a size no batch makes whole, accepted by a reshape's -1
            return check_number(_eval(tree.body, scope, text, exact=True), text)
        return value
    except RecursionError:
        raise ExprError(f"expression nested too deeply: `{text}`") from None


@lru_cache(maxsize=4096)
def _parse(text: str):
    """The syntax tree of an expression, or the parser's complaint (a spec repeats the same few
    expressions, `out: d_model`, thousands of times in a large graph)."""
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return exc.msg
    except (ValueError, MemoryError, RecursionError) as exc:  # e.g. a NUL character
        return str(exc) or type(exc).__name__


def _eval(node, scope, text, exact=False):
    return check_number(_eval_node(node, scope, text, exact), text)


def _eval_node(node, scope, text, exact=False):
    match node:
        case ast.Constant(value=v) if isinstance(v, int | float | bool):
            return v
        case ast.Name(id=name):
            if name in scope:
                v = scope[name]
                if not isinstance(v, NUMBER):
                    what = f"the word `{v}`" if isinstance(v, str) else "empty" if v is None else \
                        f"a {type(v).__name__}"
                    raise ExprError(f"`{name}` is {what}, not a number, in `{text}`", value=v)
                return v
            from graphc.diagnostics import did_you_mean

            raise ExprError(
                f"unknown name `{name}`" + (f" in `{text}`" if text.strip() != name else ""),
                hint=did_you_mean(name, scope) or "define it under `constants:` (or pass --set)",
                name=name,
            )
        case ast.UnaryOp(op=ast.USub(), operand=x):
            return -_eval(x, scope, text, exact)
        case ast.UnaryOp(op=ast.UAdd(), operand=x):
            return _eval(x, scope, text, exact)
        case ast.BinOp(left=l, op=op, right=r) if type(op) in _BINOPS:
            a, b = _eval(l, scope, text, exact), _eval(r, scope, text, exact)
            if isinstance(op, ast.Pow):
                if isinstance(b, sympy.Basic) and not b.is_number:
                    raise ExprError(f"the exponent `{b}` in `{text}` must be a number, not a dimension")
                if abs(b) > MAX_POWER:
                    raise ExprError(f"exponent {b} too large in `{text}` (at most {MAX_POWER})")
            if isinstance(op, ast.Div | ast.FloorDiv | ast.Mod) and b == 0:
                raise ExprError(f"division by zero in `{text}`")
            try:
                if isinstance(op, ast.FloorDiv):
                    return _symbolic_floordiv(a, b)
                if isinstance(op, ast.Div) and isinstance(a, int) and isinstance(b, int) and a % b == 0:
                    return a // b  # keep exact integers integral: 128 / 4 is the int 32
                if exact and isinstance(op, ast.Div) and isinstance(a, int | sympy.Rational) \
                        and isinstance(b, int | sympy.Rational) and not isinstance(a, bool) and not isinstance(b, bool):
                    return sympy.Rational(a) / sympy.Rational(b)
                return _BINOPS[type(op)](a, b)
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise ExprError(f"cannot compute `{ast.unparse(node)}` in `{text}`: {exc}") from None
        case ast.Call(func=ast.Name(id=fname), args=args, keywords=[]) if fname in _FUNCS:
            values = [_eval(a, scope, text, exact) for a in args]
            if exact and not any(isinstance(v, sympy.Basic) and not v.is_number for v in values):
                if fname in ("min", "max", "abs"):  # exact on rationals too
                    return _FUNCS[fname](*values)
                # the others (int, round, sqrt, …) take the first pass's numbers
                values = [(int(v) if v.is_Integer else float(v)) if isinstance(v, sympy.Basic) else v
                          for v in values]
            if any(isinstance(v, sympy.Basic) for v in values):
                if fname in ("min", "max") and values:
                    return (sympy.Min if fname == "min" else sympy.Max)(*values)
                raise ExprError(f"`{fname}` needs concrete numbers in `{text}`")
            try:
                return _FUNCS[fname](*values)
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise ExprError(f"cannot compute `{ast.unparse(node)}` in `{text}`: {exc}") from None
    raise ExprError(
        f"unsupported syntax in expression `{text}`",
        hint="expressions may use numbers, names, + - * / // % **, and min/max/int/float/ceil/floor/sqrt",
    )


def is_expression(value) -> bool:
    return isinstance(value, str)
