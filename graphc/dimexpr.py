"""An input axis declared as an expression of dims, evaluated exactly and without sympy.

A model's TensorSpec (graphc.compiler.model) declares each input axis as an int, a dim name
(`B`) or an expression of dims, spelled as sympy prints it: `2*B`, `T - 1`, `H/2 + 1/2`,
`floor(H/2 - 3/2) + 1`, `Max(3, T/2)`, `Mod(T, 4)`, `B**(-2)`. What runs a model needs such an
axis's value at the sizes a batch binds: the model's input guards (graphc.compiler.guards), the
data feeder (graphc.runtime.data.feed: checking a fed array, sizing a generated one), synthetic
batches (graphc.compiler.checks). None of them may import sympy for it: a restored model runs
without the front end (graphc.compiler.saved), and importing sympy costs a large part of a
cached start.

So the text is parsed with `ast` and walked over a whitelist: int literals, names, + - * / //
% ** and parentheses, and the functions min, max, floor, ceil (also as sympy prints them: Min,
Max, ceiling, Mod). Nothing reaches `eval`. The arithmetic is exact, as sympy's: ints, and
`Fraction`s where a quotient is not whole, so `H/2 + 1/2` at H = 6 is 7/2 (which no axis is),
never a silent floor. Hostile text is bounded: at most MAX_LENGTH characters, exponents of at
most MAX_POWER, and every intermediate number (numerator and denominator) at most MAX_BITS bits,
checked before a power is taken, so `9**9**9` or `(2**64)**64` fails at once instead of
allocating.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache

MAX_LENGTH = 1000
MAX_POWER = 64  # as the spec's own expressions (graphc.spec.expr)
MAX_BITS = 1024  # a product of eight 64-bit sizes fits with room to spare

Number = int | Fraction

# name → (fewest, most) arguments, and the function
_FUNCS = {
    "min": (1, None, lambda *a: min(a)), "Min": (1, None, lambda *a: min(a)),
    "max": (1, None, lambda *a: max(a)), "Max": (1, None, lambda *a: max(a)),
    "floor": (1, 1, math.floor),
    "ceil": (1, 1, math.ceil), "ceiling": (1, 1, math.ceil),
    "Mod": (2, 2, lambda a, b: a % b),
}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


class DimExprError(ValueError):
    """A dimension expression that cannot be evaluated (bad syntax, an unbound name, too large)."""


class UndefinedDim(DimExprError, ZeroDivisionError):
    """A division (or a negative power) by zero at these sizes: the expression has no value."""


@lru_cache(maxsize=1024)
def parse(text: str) -> ast.expr:
    """The checked syntax tree of `text`; DimExprError if it is not a dimension expression."""
    if len(text) > MAX_LENGTH:
        raise DimExprError(f"a dimension expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
        _check(tree, text)
    except SyntaxError as exc:
        raise DimExprError(f"`{_short(text)}` is not a dimension expression: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:  # e.g. a NUL character; deep nesting
        if isinstance(exc, DimExprError):
            raise
        raise DimExprError(f"`{_short(text)}` is not a dimension expression "
                           f"({str(exc) or type(exc).__name__})") from None
    return tree


def names(text: str) -> frozenset[str]:
    """The dims `text` mentions."""
    return _names(parse(text))


def value(text: str, sizes: Mapping[str, int]) -> Number:
    """`text` at these sizes of its dims: an int, or a Fraction when it is not whole.
    DimExprError if it mentions a dim `sizes` lacks or a number grows past MAX_BITS;
    UndefinedDim if it divides by zero there."""
    tree = parse(text)
    missing = _names(tree) - set(sizes)
    if missing:
        raise DimExprError(f"`{_short(text)}` needs {', '.join(sorted(missing))}, which "
                           f"{'is' if len(missing) == 1 else 'are'} not bound")
    try:
        return _whole(_eval(tree, {k: int(v) for k, v in sizes.items()}, text))
    except ZeroDivisionError:
        raise UndefinedDim(f"`{_short(text)}` divides by zero at "
                           f"{', '.join(f'{k}={sizes[k]}' for k in sorted(_names(tree)))}") from None
    except RecursionError:
        raise DimExprError(f"`{_short(text)}` is nested too deeply") from None


def size(text: str, sizes: Mapping[str, int]) -> int:
    """`text` at these sizes as an axis length: DimExprError unless a whole number ≥ 0."""
    v = value(text, sizes)
    if isinstance(v, Fraction) or v < 0:
        raise DimExprError(f"`{_short(text)}` is {v}, not a whole number ≥ 0")
    return v


def _short(text: str) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:MAX_LENGTH + 1])
    return text if len(text) <= 60 else f"{text[:28]}…{text[-28:]}"


def _check(node: ast.AST, text: str) -> None:
    match node:
        case ast.Constant(value=v) if type(v) is int:
            return
        case ast.Name():
            return
        case ast.UnaryOp(op=ast.USub() | ast.UAdd(), operand=x):
            return _check(x, text)
        case ast.BinOp(left=a, op=op, right=b) if isinstance(op, _BINOPS):
            _check(a, text)
            return _check(b, text)
        case ast.Call(func=ast.Name(id=f), args=args, keywords=[]) if f in _FUNCS:
            fewest, most, _ = _FUNCS[f]
            if len(args) < fewest or most is not None and len(args) > most:
                raise DimExprError(f"`{f}` takes {fewest if fewest == most else f'{fewest} or more'} "
                                   f"argument{'s' if fewest > 1 or most is None else ''} in `{_short(text)}`")
            for a in args:
                _check(a, text)
            return
    raise DimExprError(f"`{_short(text)}` is not a dimension expression: `{_short(ast.unparse(node))}` "
                       "is not allowed (whole numbers, dims, + - * / // % **, min, max, floor, ceil)")


@lru_cache(maxsize=1024)
def _names(tree: ast.expr) -> frozenset[str]:
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in callees)


def _whole(v: Number) -> Number:
    return v.numerator if isinstance(v, Fraction) and v.denominator == 1 else v


def _bits(v: Number) -> int:
    if isinstance(v, Fraction):
        return max(v.numerator.bit_length(), v.denominator.bit_length())
    return v.bit_length()


def _bounded(v: Number, text: str) -> Number:
    if _bits(v) > MAX_BITS:
        raise DimExprError(f"a number in `{_short(text)}` grows past {MAX_BITS} bits")
    return _whole(v)


def _eval(node: ast.AST, sizes: dict[str, int], text: str) -> Number:
    match node:
        case ast.Constant(value=v):
            return _bounded(v, text)
        case ast.Name(id=name):
            return sizes[name]
        case ast.UnaryOp(op=op, operand=x):
            v = _eval(x, sizes, text)
            return -v if isinstance(op, ast.USub) else v
        case ast.BinOp(left=l, op=op, right=r):
            a, b = _eval(l, sizes, text), _eval(r, sizes, text)
            if isinstance(op, ast.Pow):
                return _bounded(_power(a, b, text), text)
            return _bounded(_binop(op, a, b), text)
        case ast.Call(func=ast.Name(id=f), args=args):
            return _bounded(_FUNCS[f][2](*(_eval(a, sizes, text) for a in args)), text)
    raise AssertionError(ast.dump(node))  # parse() let through only the nodes above


def _binop(op: ast.operator, a: Number, b: Number) -> Number:
    match op:
        case ast.Add():
            return a + b
        case ast.Sub():
            return a - b
        case ast.Mult():
            return a * b
        case ast.Div():
            return Fraction(a) / b
        case ast.FloorDiv():
            return a // b
    return a % b


def _power(a: Number, b: Number, text: str) -> Number:
    if isinstance(b, Fraction) or abs(b) > MAX_POWER:
        raise DimExprError(f"an exponent in `{_short(text)}` is {b}: it must be a whole number "
                           f"of at most {MAX_POWER} in size")
    if _bits(a) * abs(b) > MAX_BITS:  # a bound on the power's size, before it is taken
        raise DimExprError(f"a number in `{_short(text)}` grows past {MAX_BITS} bits")
    return Fraction(a) ** b if b < 0 else a**b
